"""The cost model that chooses between one full pass and successive halving: seed 000 §4.2.

For M models, N training and O test samples and P equal devices:

    T_w/o = 1/P * sum_i ( T_N + T_O + L_i + I_i O + I_i N + E_Proxy N )

    T_w/  = 1/P * sum_i ( L_i + I_i O )
          + sum_k 1/min(P, |S_k|) * sum_{j in S_k} ( L_j + T_N + I_j C r_k + T_O + E_Proxy sum_{l<=k} C r_l )

L_i is model i's load time, I_i its per-sample inference time, T_N the time to
load the training data, T_O the time to load a model's inferred test features,
E_Proxy the per-sample proxy time; S_k and r_k come from Algorithm 1 (see
halving.py).

Departure from §4.2 on S_k: the paper takes S_k as the |S_k| models of largest
I_j, "following the trend of larger and slower models surviving the longest",
and §6.4 reports the estimate going wrong when that trend does not hold. Which
models survive is a property of the pool, the proxy and the data that earlier
runs show, so the estimate uses a survival tendency s in [-1, 1] measured on
them (planner.survival): the expected sum of any per-model cost f over S_k is

    (1 - |s|) |S_k| mean_M(f) + |s| sum_{j in X_k} f_j

with X_k the |S_k| slowest models (s > 0) or the fastest (s < 0). s = 1 is the
paper's rule and the prior before any run; s = 0 means survival does not
depend on cost.

Departure from §4.2: T_N and T_O are charged per sample read (t_N * samples,
t_O * O). shift streams readers in blocks and an SH round reads only the r_k C
new samples of each survivor, so a constant T_N per round would charge a full
read that never happens. C r_k of the last round is the rest of the reader, as
halving.schedule gives it.

Incremental work (seed 000 §5): a re-run infers only the blocks that lack features of
their current content (missing, or stale after their data changed), so N and O in the
I_i terms, and the training samples read (t_N), count only those samples of model i;
L_i is charged only where model i has something to infer. The proxy terms stay whole:
a proxy re-estimates on every sample it sees.
"""

from dataclasses import dataclass, field

import numpy as np


def samples_in_blocks(codes, blocks):
    """How many of the samples whose block codes are `codes` lie in `blocks` (a version's, versions.block_codes)."""
    if not blocks:
        return 0
    return int(np.isin(codes, np.fromiter(blocks, np.int64, len(blocks))).sum())


@dataclass(frozen=True)
class CostInputs:
    train_samples: int                 # N
    test_samples: int                  # O
    devices: int                       # P
    load_seconds: dict                 # L_i per model
    infer_seconds: dict                # I_i per model, per sample
    read_seconds: float                # t_N: reading one training sample
    feature_read_seconds: float        # t_O: reading one cached test feature row
    proxy_seconds: float               # E_Proxy, per training sample
    survival: float = 1.0              # s: 1 the slowest models survive (§4.2), 0 cost-blind, -1 the fastest
    survival_observed: int = 0         # survivor sets s was measured on; 0: the §4.2 prior
    train_block_size: int = 1          # samples per cached block of the training reader
    cached_train_blocks: dict = field(default_factory=dict)  # per model: training blocks already inferred
    cached_test_samples: dict = field(default_factory=dict)  # per model: test samples already inferred
    # a version of a mutable reader: per sample, in the order halving reads them, the code of the source
    # block holding it (versions.block_codes); cached_train_blocks then holds such codes
    train_block_codes: np.ndarray | None = None

    def missing_train(self, model, lo, hi):
        """Training samples in [lo, hi) that model must still infer."""
        cached = self.cached_train_blocks.get(model)
        if not cached:
            return hi - lo
        if self.train_block_codes is not None:
            return hi - lo - samples_in_blocks(self.train_block_codes[lo:hi], cached)
        size, out = self.train_block_size, 0
        for b in range(lo // size, -(-hi // size)):
            if b not in cached:
                out += min(hi, (b + 1) * size) - max(lo, b * size)
        return out

    def missing_test(self, model):
        return self.test_samples - self.cached_test_samples.get(model, 0)


@dataclass
class Estimate:
    without_sh: float
    with_sh: float
    terms: dict = field(default_factory=dict)

    @property
    def choice(self):
        return "successive halving" if self.with_sh < self.without_sh else "full"

    @property
    def predicted_ratio(self):
        """T_w/ / T_w/o: below 1 when successive halving is expected to be faster."""
        return self.with_sh / self.without_sh if self.without_sh else float("inf")


def _load(c, m, samples):
    return c.load_seconds[m] if samples else 0.0


def without_sh(c, models):
    n, o, p = c.train_samples, c.test_samples, max(1, c.devices)
    t_o = c.feature_read_seconds * o
    total = 0.0
    for m in models:
        n_m, o_m = c.missing_train(m, 0, n), c.missing_test(m)
        total += (c.read_seconds * n_m + t_o + _load(c, m, n_m + o_m) + c.infer_seconds[m] * (o_m + n_m)
                  + c.proxy_seconds * n)
    return total / p


def with_sh(c, models, sched):
    o, p = c.test_samples, max(1, c.devices)
    test_phase = sum(_load(c, m, c.missing_test(m)) + c.infer_seconds[m] * c.missing_test(m) for m in models) / p
    rounds, before = [], 0
    for r in sched.rounds:
        lo, hi = before, r.seen               # C r_k new samples, the rest of the reader in the last round

        def per_model(j, lo=lo, hi=hi):
            new = c.missing_train(j, lo, hi)
            return _load(c, j, new) + (c.infer_seconds[j] + c.read_seconds) * new
        shared = c.feature_read_seconds * o + c.proxy_seconds * r.seen
        cost = survivor_sum(c, models, r.models, per_model) + r.models * shared
        rounds.append(cost / min(p, r.models))
        before = r.seen
    return test_phase, rounds


def survivor_sum(c, models, size, f):
    """Expected sum of f over the `size` survivors of a round, under the survival tendency c.survival."""
    s = max(-1.0, min(1.0, c.survival))
    by_cost = sorted(models, key=lambda m: (-c.infer_seconds[m], m))
    extreme = by_cost[:size] if s >= 0 else by_cost[::-1][:size]
    mean = sum(f(m) for m in models) / len(models)
    return (1 - abs(s)) * size * mean + abs(s) * sum(f(m) for m in extreme)


def survival_tendency(infer_seconds, survivors):
    """s of one observed survivor set: where its inference cost lies between the fastest and the slowest.

    infer_seconds holds I_j of the models the round started with, survivors the
    models it kept. 0 when the survivors cost what |S| models cost on average.
    """
    size = len(survivors)
    if not size or size >= len(infer_seconds):
        return None
    costs = sorted(infer_seconds.values())
    actual = sum(infer_seconds[m] for m in survivors)
    mean = size * sum(costs) / len(costs)
    slowest, fastest = sum(costs[-size:]), sum(costs[:size])
    if actual >= mean:
        return (actual - mean) / (slowest - mean) if slowest > mean else 0.0
    return -(mean - actual) / (mean - fastest) if mean > fastest else 0.0


def estimate(c, models, sched):
    """Both plans' estimated seconds for this query, with their terms."""
    models = list(models)
    full = without_sh(c, models)
    test_phase, rounds = with_sh(c, models, sched)
    terms = {
        "M": len(models), "N": c.train_samples, "O": c.test_samples, "P": c.devices,
        "sum_L": sum(c.load_seconds[m] for m in models),
        "sum_I": sum(c.infer_seconds[m] for m in models),
        "t_N": c.read_seconds, "t_O": c.feature_read_seconds, "E_proxy": c.proxy_seconds,
        "survival": c.survival, "survival_observed": c.survival_observed,
        "budget": sched.budget, "chunk": sched.chunk,
        "rounds": [{"k": r.index, "models": r.models, "r_k": r.pulls, "R_k": r.seen, "seconds": s}
                   for r, s in zip(sched.rounds, rounds)],
        "sh_test_phase": test_phase,
        # incremental work (seed 000 §5): samples without features of their current content, over the models
        "missing_N": sum(c.missing_train(m, 0, c.train_samples) for m in models),
        "missing_O": sum(c.missing_test(m) for m in models),
    }
    return Estimate(full, test_phase + sum(rounds), terms)
