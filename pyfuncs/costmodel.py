"""The cost model that chooses between one full pass and successive halving: seed 000 §4.2.

For M models, N training and O test samples and P equal devices:

    T_w/o = 1/P * sum_i ( T_N + T_O + L_i + I_i O + I_i N + E_Proxy N )

    T_w/  = 1/P * sum_i ( L_i + I_i O )
          + sum_k 1/min(P, |S_k|) * sum_{j in S_k} ( L_j + T_N + I_j C r_k + T_O + E_Proxy sum_{l<=k} C r_l )

L_i is model i's load time, I_i its per-sample inference time, T_N the time to
load the training data, T_O the time to load a model's inferred test features,
E_Proxy the per-sample proxy time; S_k and r_k come from Algorithm 1 (see
halving.py) and S_k is taken as the |S_k| models of largest I_j, since larger,
slower models tend to survive longest (§4.2).

Departure from §4.2: T_N and T_O are charged per sample read (t_N * samples,
t_O * O). shift streams readers in blocks and an SH round reads only the r_k C
new samples of each survivor, so a constant T_N per round would charge a full
read that never happens. C r_k of the last round is the rest of the reader, as
halving.schedule gives it.
"""

from dataclasses import dataclass, field


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


def without_sh(c, models):
    n, o, p = c.train_samples, c.test_samples, max(1, c.devices)
    t_n, t_o = c.read_seconds * n, c.feature_read_seconds * o
    return sum(t_n + t_o + c.load_seconds[m] + c.infer_seconds[m] * o + c.infer_seconds[m] * n
               + c.proxy_seconds * n for m in models) / p


def with_sh(c, models, sched):
    o, p = c.test_samples, max(1, c.devices)
    test_phase = sum(c.load_seconds[m] + c.infer_seconds[m] * o for m in models) / p
    slowest_first = sorted(models, key=lambda m: (-c.infer_seconds[m], m))
    rounds, before = [], 0
    for r in sched.rounds:
        survivors = slowest_first[:r.models]
        new = r.seen - before                 # C r_k, the rest of the reader in the last round
        cost = sum(c.load_seconds[j] + c.read_seconds * new + c.infer_seconds[j] * new
                   + c.feature_read_seconds * o + c.proxy_seconds * r.seen for j in survivors)
        rounds.append(cost / min(p, len(survivors)))
        before = r.seen
    return test_phase, rounds


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
        "budget": sched.budget, "chunk": sched.chunk,
        "rounds": [{"k": r.index, "models": r.models, "r_k": r.pulls, "R_k": r.seen, "seconds": s}
                   for r, s in zip(sched.rounds, rounds)],
        "sh_test_phase": test_phase,
    }
    return Estimate(full, test_phase + sum(rounds), terms)
