"""Successive halving bookkeeping: seed 000 §4.1, Algorithm 1, generalised to top-K.

An arm is a model; pulling it runs inference on r_k * C more training samples
and re-estimates the proxy on every sample it has seen so far (R_k). After each
round the better half survives, until K remain.

With |M| models and top-K, there are n = ceil(log2(|M| / K)) rounds (for K = 1
this is Algorithm 1's ceil(log2 |M|)). Round k keeps L_k = |S_k| models, with
S_0 = M and L_{k+1} = max(K, ceil(L_k / 2)), and gives each of them

    r_k = floor(B / (L_k * n))                         (Algorithm 1)

more chunks of C samples, so a survivor of round k has seen R_k = C * sum_{j<=k} r_j.
The minimal budget keeps every r_k >= 1 (§4.1 "SH Minimal Budget"):

    B_min = |M| * n                                    (B >= |M| ceil(log2 |M|) for K = 1)

and the minimal chunk size makes the last round reach the whole reader of N samples:

    C_min = ceil(N / sum_{j<n} r_j)

§4.1 writes floor(log2 |M|) inside r_j of the C_min formula; we use the ceiling of
Algorithm 1 throughout, since the two must agree for the last round to see all N.
Whatever the chunk size, the last round is given the rest of the reader, so the K
survivors always end with the full-data proxy value and the query's semantics hold.
"""

import math
from dataclasses import dataclass

from .errors import INVALID_PARAMETER, ShiftError


@dataclass(frozen=True)
class Round:
    index: int       # k
    models: int      # L_k = |S_k|, models evaluated in this round
    pulls: int       # r_k
    seen: int        # R_k, training samples each of them has seen after this round
    keep: int        # |S_{k+1}|, survivors of this round


@dataclass(frozen=True)
class Schedule:
    num_models: int
    top_k: int
    num_samples: int
    budget: int
    chunk: int
    rounds: tuple

    @property
    def samples_inferred(self):
        """Training samples run through some model over the whole schedule (each is inferred once)."""
        total, before = 0, 0
        for r in self.rounds:
            total += r.models * (r.seen - before)
            before = r.seen
        return total


def num_rounds(num_models, top_k=1):
    if num_models <= top_k:
        return 0
    return math.ceil(math.log2(num_models / top_k))


def minimal_budget(num_models, top_k=1):
    return num_models * num_rounds(num_models, top_k)


def round_sizes(num_models, top_k=1):
    sizes, size = [], num_models
    for _ in range(num_rounds(num_models, top_k)):
        sizes.append(size)
        size = max(top_k, math.ceil(size / 2))
    return sizes


def schedule(num_models, num_samples, top_k=1, budget=None, chunk=None):
    """The rounds of successive halving for |M| models, N training samples and top-K."""
    if top_k < 1:
        raise ShiftError("successive halving needs a top-K of at least 1, not %d" % top_k, INVALID_PARAMETER)
    n = num_rounds(num_models, top_k)
    if n == 0:
        return Schedule(num_models, top_k, num_samples, 0, num_samples,
                        (Round(0, num_models, 1, num_samples, num_models),))
    b_min = minimal_budget(num_models, top_k)
    budget = b_min if budget is None else int(budget)
    if budget < b_min:
        raise ShiftError("successive halving budget %d is below the minimum %d for %d models and top-%d"
                         % (budget, b_min, num_models, top_k), INVALID_PARAMETER,
                         hint="with less, some round would pull no arm (seed 000 §4.1): use at least %d" % b_min)
    sizes = round_sizes(num_models, top_k)
    pulls = [budget // (size * n) for size in sizes]
    if chunk is None:
        chunk = math.ceil(num_samples / sum(pulls))
    elif chunk < 1:
        raise ShiftError("successive halving chunk size must be positive, not %d" % chunk, INVALID_PARAMETER)
    rounds, seen = [], 0
    for k, (size, r) in enumerate(zip(sizes, pulls)):
        seen = min(num_samples, seen + r * chunk)
        last = k == n - 1 or seen >= num_samples
        if last:
            seen = num_samples  # the survivors end on the full reader
        keep = top_k if last else max(top_k, math.ceil(size / 2))
        rounds.append(Round(k, size, r, seen, keep))
        if last:
            break
    return Schedule(num_models, top_k, num_samples, budget, chunk, tuple(rounds))


def survivors(values, keep, descending=False):
    """The `keep` best models by proxy value; ties go to the smaller model id, as in the query's ORDER BY."""
    if descending:
        ranked = sorted(values, key=lambda m: (-values[m], m))
    else:
        ranked = sorted(values, key=lambda m: (values[m], m))
    return ranked[:keep]


def run(models, sched, evaluate, descending=False):
    """Algorithm 1's loop: evaluate(alive, seen) gives each alive model's value after `seen` samples.

    Returns the survivors of the last round, best first, and their last values.
    """
    alive, values = list(models), {}
    for r in sched.rounds:
        values = evaluate(alive, r.seen)
        alive = survivors(values, r.keep, descending)
    return alive, {m: values[m] for m in alive}
