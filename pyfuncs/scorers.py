"""The scorer registry: every ScoringAlgorithm and DataSimMetric SHiFT-QL can ORDER BY.

Seed 000 §3.1 "Supporting New Search Strategies": a new strategy is a new
registry entry (name, parameters, direction), never a parser change. The
SHiFT-QL translator reads this registry: a name in ORDER BY that is registered
here ranks rows by it, with the readers its kind asks for.

Kinds of entry:

- 'proxy' ranks models by a cached *proxy* computation of pyfuncs.proxies on
  (test reader, train reader): `ORDER BY Linear(lr=0.1) TESTED ON r TRAINED ON r`.
  The value stored in shift.scores of the classifier proxies is an accuracy in
  [0, 1]; the query sees it as the test error 1 - accuracy (the "loss" of seed
  000 Alg. 1, so `ORDER BY CosineNN ASC` picks the best model, as Q2/Q3 of §3.2
  are written) or as the accuracy itself (`ORDER BY LinearAccuracy DESC`). The
  transferability metrics (LogME, SFDA, LEEP, ...) are seen as computed, higher
  is better (`ORDER BY LogME DESC`).
- 'finetune' ranks models by fine-tuning them (seed 002, the ground truth):
  task-aware with TESTED ON / TRAINED ON, or meta-learned without them, from
  the recorded benchmark results on the readers in scope (Q5 of seed 000 §3.2).
- 'datasim' ranks data readers by the distance between their embedding and a
  target reader's (seed 000 §3.1 DataSimMetric): `ORDER BY Task2Vec TESTED
  AGAINST r`; `proxy` names the embedding (shift.task_embeddings.kind), the
  parameter `distance` the task distance (pyfuncs.embeddings; lower is more similar),
  the others the settings the embedding is computed with (pyfuncs.datasim).
"""

import json
from dataclasses import dataclass, field

from .errors import INVALID_PARAMETER, WRONG_OBJECT_TYPE, ShiftError, unknown
KINDS = ("proxy", "finetune", "datasim")
# reader embeddings a DataSimMetric may compare: the kinds of shift.task_embeddings
EMBEDDINGS = ("task2vec",)
# the task distances of pyfuncs.embeddings
DISTANCES = ("symmetric", "normalized_cosine", "asymmetric")


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: object
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    description: str = ""
    cached: bool = True             # False: how values are shown, not part of what is computed and cached

    def coerce(self, scorer, value):
        if self.type is bool:
            if not isinstance(value, bool):
                raise ShiftError("parameter %s of %s must be true or false, not %r" % (self.name, scorer, value),
                                 INVALID_PARAMETER)
            return value
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
    proxy: str                      # cached computation: a pyfuncs.proxies entry, 'finetune', or an embedding
    transform: str                  # 'error' (1 - accuracy), 'accuracy', 'score' (as computed) or 'distance'
    params: tuple = ()
    fixed: dict = field(default_factory=dict)
    description: str = ""
    kind: str = "proxy"             # 'proxy', 'finetune' or 'datasim' (see the module docstring)
    pool: str = ""                  # relative to the pool ranked: the pyfuncs.transferability module that combines

    @property
    def higher_is_better(self):
        return self.transform in ("accuracy", "score")

    @property
    def ranks(self):
        """What the entry orders: 'models' or 'readers'."""
        return "readers" if self.kind == "datasim" else "models"

    @property
    def reader_clauses(self):
        """The reader clauses a query may give it, each a tuple of clause keys (the first is the usual one)."""
        if self.kind == "datasim":
            return (("tested_against",),)
        if self.kind == "finetune":
            return (("tested_on", "trained_on"), ())
        return (("tested_on", "trained_on"),)

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

    def cached_params(self, resolved):
        """The resolved parameters that make the cached value (the proxy's, and the cache key)."""
        shown = {p.name for p in self.params if not p.cached}
        return {k: v for k, v in resolved.items() if k not in shown}

    def present_pool(self, values, relative=False):
        """{model: value as the query sees it} of {model: cached value}. A pool-relative metric's cached values
        are raw terms, combined over exactly the models given (NCTI's, ETran's min-max normalisation);
        `relative` min-max normalises any metric's values so over the models given (1 the best, 0 the worst)."""
        models = list(values)
        if self.pool:
            import importlib

            combine = importlib.import_module(".transferability." + self.pool, __package__).combine
            return dict(zip(models, combine([values[m] for m in models]))) if models else {}
        shown = {m: self.present(v) for m, v in values.items()}
        if relative and models:
            low, high = min(shown.values()), max(shown.values())
            return {m: 0.0 if high == low else (v - low) / (high - low) for m, v in shown.items()}
        return shown


_LINEAR_PARAMS = (
    Param("lr", float, 0.01, minimum=1e-8, maximum=10.0, description="SGD learning rate (constant)"),
    Param("l2", float, 1e-4, minimum=0.0, maximum=10.0, description="L2 regularisation strength"),
    Param("batch_size", int, 64, minimum=1, maximum=1 << 20, description="mini-batch size"),
    Param("epochs", int, 10, minimum=1, maximum=10000, description="passes over the training features"),
    Param("seed", int, 0, minimum=0, maximum=2**31 - 1, description="seed of the mini-batch order"),
)

_KNN_PARAMS = (
    Param("k", int, 5, minimum=1, maximum=10000, description="number of nearest training samples that vote"),
    Param("metric", str, "cosine", choices=("cosine", "euclidean"),
          description="cosine dissimilarity or Euclidean (L2) distance"),
)

# seed 002 §4.3: a new linear head, then the whole network fine-tuned at each of two learning
# rates, the one with the best validation accuracy kept; the median over repeats
_FINETUNE_PARAMS = (
    Param("lr", float, 0.01, minimum=1e-8, maximum=10.0,
          description="largest learning rate of the grid (SGD, momentum 0.9, cosine decay)"),
    Param("lr_grid", int, 2, minimum=1, maximum=6,
          description="learning rates tried: lr, lr/10, lr/100, ... (seed 002 §4.3 tries two)"),
    Param("steps", int, 200, minimum=1, maximum=1_000_000, description="SGD steps of the whole network per run"),
    Param("batch_size", int, 64, minimum=1, maximum=1 << 16, description="mini-batch size"),
    Param("repeats", int, 1, minimum=1, maximum=20,
          description="runs with seeds seed, seed+1, ...; their median test accuracy is the result "
                      "(seed 002 takes the median of 5)"),
    Param("seed", int, 0, minimum=0, maximum=2**31 - 1, description="seed of the head, the batch order and the run"),
)

# Task2Vec (Achille et al., ICCV 2019; seed 000 §3.3): every parameter but distance and alpha is a
# setting of the embedding, recorded with it (shift.task_embeddings.settings)
TASK2VEC_SETTINGS = ("probe", "method", "skip_layers", "max_samples", "batch_size", "epochs", "seed")
_TASK2VEC_PARAMS = (
    Param("probe", str, "", description="the probe network: a registered timm, torchvision or torchscript model; "
                                        "empty: the setting shift.task2vec_probe"),
    Param("method", str, "montecarlo", choices=("montecarlo", "variational"),
          description="Fisher estimate: Monte-Carlo (labels sampled from the model) or the paper's variational one"),
    Param("skip_layers", int, 0, minimum=0, maximum=10000,
          description="leading convolution and linear layers of the probe left out of the embedding"),
    Param("max_samples", int, 1000, minimum=2, maximum=1_000_000,
          description="samples read from the start of the reader (all of a smaller reader)"),
    Param("batch_size", int, 64, minimum=1, maximum=1 << 16, description="mini-batch size of the Fisher passes"),
    Param("epochs", int, 1, minimum=1, maximum=1000, description="passes of the Fisher estimate over the samples"),
    Param("seed", int, 0, minimum=0, maximum=2**31 - 1,
          description="seed of the head, the sampled labels and the variational noise"),
    Param("distance", str, "normalized_cosine", choices=DISTANCES,
          description="symmetric d_sym, the normalised cosine of seed 002 (HNSW-indexed), or the asymmetric "
                      "d_sym(a, b) - alpha d_sym(a, trivial)"),
    Param("alpha", float, 0.15, minimum=0.0, maximum=10.0, description="alpha of the asymmetric distance"),
)

_ENTRIES = []
for _metric, _label in (("cosine", "Cosine"), ("euclidean", "Euclidean")):
    # k=1 is written out so that KNN(k=1, metric=...) shares these cached values
    _ENTRIES += [
        Scorer(_label + "NN", "nn", "error", fixed={"metric": _metric, "k": 1},
               description="1-nearest-neighbour test error, %s distance (seed 000 §3.4)" % _metric),
        Scorer(_label + "NNAccuracy", "nn", "accuracy", fixed={"metric": _metric, "k": 1},
               description="1-nearest-neighbour test accuracy, %s distance (seed 000 §3.4)" % _metric),
    ]
_ENTRIES += [
    Scorer("KNN", "nn", "error", params=_KNN_PARAMS,
           description="k-nearest-neighbour test error, majority vote (seed 002 task-aware kNN)"),
    Scorer("KNNAccuracy", "nn", "accuracy", params=_KNN_PARAMS,
           description="k-nearest-neighbour test accuracy, majority vote (seed 002 task-aware kNN)"),
    Scorer("Linear", "linear", "error", params=_LINEAR_PARAMS,
           description="test error of a linear classifier trained with SGD on frozen features (seed 000 §3.4)"),
    Scorer("LinearAccuracy", "linear", "accuracy", params=_LINEAR_PARAMS,
           description="test accuracy of a linear classifier trained with SGD on frozen features (seed 000 §3.4)"),
    Scorer("FineTune", "finetune", "error", params=_FINETUNE_PARAMS, kind="finetune",
           description="test error after fine-tuning the whole model (seed 002 §4.3); without readers, the "
                       "recorded results on the readers in scope (seed 000 §3.2 Q5)"),
    Scorer("FineTuneAccuracy", "finetune", "accuracy", params=_FINETUNE_PARAMS, kind="finetune",
           description="test accuracy after fine-tuning the whole model (seed 002 §4.3, seed 000 §3.2 Q5)"),
    Scorer("Task2Vec", "task2vec", "distance", params=_TASK2VEC_PARAMS, kind="datasim",
           description="distance between the Task2Vec embeddings of a reader and the target reader, computed on "
                       "demand by DataSim tasks (seed 000 §3.1 DataSimMetric, §3.4; Achille et al. 2019)"),
]

# Transferability metrics (pyfuncs/transferability): computed on the training reader's features (LEEP and
# NCE: its source-task logits); `TESTED ON r TRAINED ON r` names the reader twice, the test reader is not read
_METRICS = (
    ("LogME", "logme", (), "log maximum evidence of a Bayesian linear model on the features (You et al., ICML 2021)"),
    ("HScore", "hscore", (), "H-score, tr(cov(f)^-1 cov(E[f|y])) (Bao et al., ICIP 2019)"),
    ("ShrinkageHScore", "shrinkage_hscore", (),
     "H-score with a Ledoit-Wolf covariance (Ibrahim et al., ECML PKDD 2022)"),
    ("GBC", "gbc", (Param("gaussian_type", str, "diagonal", choices=("diagonal", "spherical"),
                          description="per-class Gaussians with diagonal or spherical covariance"),),
     "Gaussian Bhattacharyya coefficient, minus the overlap of class Gaussians (Pandy et al., CVPR 2022)"),
    ("TransRate", "transrate", (Param("eps", float, 1e-4, minimum=1e-12, maximum=1.0,
                                      description="distortion of the coding rate"),),
     "coding rate of the features minus that of each class (Huang et al., ICML 2022)"),
    ("SFDA", "sfda", (), "self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022)"),
    ("NLEEP", "nleep", (Param("component_ratio", int, 5, minimum=1, maximum=100,
                              description="Gaussian mixture components per class"),
                        Param("seed", int, 0, minimum=0, maximum=2**31 - 1, description="seed of the mixture")),
     "LEEP over a Gaussian mixture of the PCA-reduced features (Li et al., CVPR 2021)"),
    ("KNNLeaveOneOut", "knn_loo", _KNN_PARAMS,
     "leave-one-out k-nearest-neighbour accuracy on the training reader's features"),
    ("LEEP", "leep", (), "log expected empirical prediction of the source classifier (Nguyen et al., ICML 2020)"),
    ("NCE", "nce", (), "negative conditional entropy of the labels given the source classifier's "
                       "predictions (Tran et al., ICCV 2019)"),
)
_RELATIVE = Param("relative", bool, False, cached=False,
                  description="min-max normalised over the models ranked: 1 the best, 0 the worst")
_ENTRIES += [Scorer(name, proxy, "score", params=params + (_RELATIVE,), description=description + "; higher is better")
             for name, proxy, params, description in _METRICS]
# relative to the pool of models ranked: raw terms cached per model, combined over the models of each query
_ENTRIES += [
    Scorer("NCTI", "ncti", "score", pool="ncti",
           description="neural-collapse transferability index, minmax(seli) + minmax(ncc) - minmax(vc) over the "
                       "models ranked (Wang et al., ICCV 2023); higher is better"),
    Scorer("ETran", "etran", "score", pool="etran",
           description="energy-based transferability, 0.85 minmax(LDA) + 0.15 minmax(energy) over the models ranked "
                       "(Gholami et al., ICCV 2023); higher is better"),
]

REGISTRY = {s.name.lower(): s for s in _ENTRIES}


def register(scorer):
    """Add a scoring algorithm or a DataSimMetric (seed 000 §3.1 "Supporting New Search Strategies").

    A proxy's computation must exist in pyfuncs.proxies; a DataSimMetric compares
    a known reader embedding with a pgvector distance.
    """
    from . import proxies
    if scorer.kind not in KINDS:
        raise ValueError("unknown scorer kind %r; use one of %s" % (scorer.kind, ", ".join(KINDS)))
    if scorer.kind == "proxy" and scorer.proxy not in proxies.PROXIES:
        raise ValueError("unknown proxy %r" % scorer.proxy)
    if scorer.kind == "datasim" and (scorer.proxy not in EMBEDDINGS or scorer.resolve({}).get("distance")
                                     not in DISTANCES):
        raise ValueError("a DataSimMetric compares one of the embeddings %s with a distance %s"
                         % (", ".join(EMBEDDINGS), ", ".join(DISTANCES)))
    if scorer.transform not in ("error", "accuracy", "score", "distance"):
        raise ValueError("unknown transform %r" % scorer.transform)
    REGISTRY[scorer.name.lower()] = scorer


def get(name):
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise unknown("scorer", name, [s.name for s in REGISTRY.values()]) from None


def get_model_scorer(name):
    """A scorer that ranks models; 42704 or 42809 otherwise."""
    scorer = get(name)
    if scorer.ranks != "models":
        raise ShiftError("%s ranks data readers, not models" % scorer.name, WRONG_OBJECT_TYPE,
                         hint="use it in a query over DataReaders: ORDER BY %s LIMIT k TESTED AGAINST reader, "
                              "or call shift.dataset_similarity" % scorer.name)
    return scorer


def get_datasim_metric(name):
    """A DataSimMetric; 42704 or 42809 otherwise."""
    metric = get(name)
    if metric.kind != "datasim":
        raise ShiftError("%s ranks models, not data readers" % metric.name, WRONG_OBJECT_TYPE,
                         hint="dataset similarity metrics: %s"
                              % ", ".join(s.name for s in REGISTRY.values() if s.kind == "datasim"))
    return metric


def canonical_json(params):
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
