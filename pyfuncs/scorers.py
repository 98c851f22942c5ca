"""The scorer registry: every ScoringAlgorithm SHiFT-QL can ORDER BY.

Seed 000 §3.1 "Supporting New Search Strategies": a new strategy is a new
registry entry (name, parameters, direction), never a parser change.

A scorer names a cached *proxy* computation (the value stored in shift.scores
is always an accuracy in [0, 1]) and how the query sees it: as the test error
1 - accuracy (the "loss" of seed 000 Alg. 1, so `ORDER BY CosineNN ASC` picks
the best model, as Q2/Q3 of §3.2 are written) or as the accuracy itself
(`ORDER BY LinearAccuracy DESC`).
"""

import json
from dataclasses import dataclass, field

from .errors import INVALID_PARAMETER, ShiftError, unknown


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: object
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    description: str = ""

    def coerce(self, scorer, value):
        ok_types = (int, float) if self.type is float else (self.type,)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise ShiftError(
                "parameter %s of %s must be %s, not %r" % (self.name, scorer, self.type.__name__, value),
                INVALID_PARAMETER)
        value = self.type(value)
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise ShiftError(
                "parameter %s of %s is %r, outside [%s, %s]" % (self.name, scorer, value, self.minimum, self.maximum),
                INVALID_PARAMETER)
        if self.choices and value not in self.choices:
            raise ShiftError("parameter %s of %s is %r" % (self.name, scorer, value), INVALID_PARAMETER,
                             hint="choose one of %s" % ", ".join(map(repr, self.choices)))
        return value


@dataclass(frozen=True)
class Scorer:
    name: str
    proxy: str                      # cached computation in pyfuncs.proxies
    transform: str                  # 'error' (1 - accuracy) or 'accuracy'
    params: tuple = ()
    fixed: dict = field(default_factory=dict)
    description: str = ""

    @property
    def higher_is_better(self):
        return self.transform == "accuracy"

    def resolve(self, given):
        """Complete, checked proxy parameters: defaults filled, fixed ones added."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        out = {}
        for key, value in given.items():
            if key in self.fixed and value == self.fixed[key]:
                continue  # already resolved: resolve(resolve(x)) == resolve(x)
            p = known.get(key) or next((q for q in self.params if q.name.lower() == str(key).lower()), None)
            if p is None:
                err = unknown("parameter of %s" % self.name, str(key), list(known))
                err.message = "unknown parameter %r of scorer %s" % (key, self.name)
                raise err
            out[p.name] = p.coerce(self.name, value)
        for p in self.params:
            out.setdefault(p.name, p.default)
        out.update(self.fixed)
        return out

    def present(self, accuracy):
        return 1.0 - accuracy if self.transform == "error" else accuracy


_LINEAR_PARAMS = (
    Param("lr", float, 0.01, minimum=1e-8, maximum=10.0, description="SGD learning rate (constant)"),
    Param("l2", float, 1e-4, minimum=0.0, maximum=10.0, description="L2 regularisation strength"),
    Param("batch_size", int, 64, minimum=1, maximum=1 << 20, description="mini-batch size"),
    Param("epochs", int, 10, minimum=1, maximum=10000, description="passes over the training features"),
    Param("seed", int, 0, minimum=0, maximum=2**31 - 1, description="seed of the mini-batch order"),
)

_ENTRIES = []
for _metric, _label in (("cosine", "Cosine"), ("euclidean", "Euclidean")):
    _ENTRIES += [
        Scorer(_label + "NN", "nn", "error", fixed={"metric": _metric},
               description="1-nearest-neighbour test error, %s distance (seed 000 §3.4)" % _metric),
        Scorer(_label + "NNAccuracy", "nn", "accuracy", fixed={"metric": _metric},
               description="1-nearest-neighbour test accuracy, %s distance (seed 000 §3.4)" % _metric),
    ]
_ENTRIES += [
    Scorer("Linear", "linear", "error", params=_LINEAR_PARAMS,
           description="test error of a linear classifier trained with SGD on frozen features (seed 000 §3.4)"),
    Scorer("LinearAccuracy", "linear", "accuracy", params=_LINEAR_PARAMS,
           description="test accuracy of a linear classifier trained with SGD on frozen features (seed 000 §3.4)"),
]

REGISTRY = {s.name.lower(): s for s in _ENTRIES}


def register(scorer):
    """Add a scoring algorithm; its proxy must exist in pyfuncs.proxies."""
    from . import proxies
    if scorer.proxy not in proxies.PROXIES:
        raise ValueError("unknown proxy %r" % scorer.proxy)
    REGISTRY[scorer.name.lower()] = scorer


def get(name):
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise unknown("scorer", name, [s.name for s in REGISTRY.values()]) from None


def canonical_json(params):
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
