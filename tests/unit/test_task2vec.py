"""Task2Vec (Achille et al., ICCV 2019): the Fisher of a tiny probe against per-sample autograd, and the distances."""

import numpy as np
import pytest
import torch
from torch import nn

from gpu_daemon import task2vec
from pyfuncs import embeddings


class TinyNet(nn.Module):
    """x (3) -> Linear(3, 2) -> tanh -> Linear(2, 2) as the head: a probe small enough to check by hand."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 2)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.body.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [1.5, 0.5, -0.5]]))
            self.body.bias.copy_(torch.tensor([0.1, -0.2]))
            self.head.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def per_sample_fisher(net, x, y):
    """Independent: one backward per sample, its gradient of -log p(y|x) w.r.t. the body's weights squared."""
    total = torch.zeros_like(net.body.weight)
    for xi, yi in zip(x, y):
        net.zero_grad()
        logp = torch.log_softmax(net(xi[None]), dim=1)[0, yi]
        (-logp).backward()
        total += net.body.weight.grad ** 2
    return total / len(y)


def hand_fisher(net, x, y):
    """By hand for this probe: d(-log p_y)/dW1 = ((W2^T (p - e_y)) * (1 - h^2)) x^T, h = tanh(W1 x + b1)."""
    w1, b1, w2 = (t.detach().numpy().astype(np.float64) for t in (net.body.weight, net.body.bias, net.head.weight))
    out = np.zeros_like(w1)
    for xi, yi in zip(x.numpy().astype(np.float64), y.numpy()):
        h = np.tanh(w1 @ xi + b1)
        logits = w2 @ h
        p = np.exp(logits - logits.max())
        p /= p.sum()
        delta = (w2.T @ (p - np.eye(2)[yi])) * (1 - h ** 2)
        out += np.outer(delta, xi) ** 2
    return out / len(y)


X = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 1.0], [-1.0, 1.0, 0.0], [0.0, -0.5, 2.0]])
Y = torch.tensor([0, 1, 1, 0])


@pytest.mark.parametrize("way", ["vmap", "loop"])
def test_squared_gradients_match_per_sample_autograd_and_the_hand_formula(way):
    net = TinyNet()
    weights = {"body.weight": net.body.weight}
    fn = task2vec._squared_gradients_vmap if way == "vmap" else task2vec._squared_gradients_loop
    got = fn(net, weights, X, Y)["body.weight"] / len(Y)
    expected = per_sample_fisher(net, X, Y)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.numpy(), hand_fisher(net, X, Y), rtol=1e-4, atol=1e-7)
    # a batch-mean gradient squared, as the reference code accumulates, is a different (smaller) number
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(X), Y).backward()
    assert not torch.allclose(net.body.weight.grad ** 2, expected)


def test_sampled_labels_follow_the_model_and_the_seed():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]] * 50)
    y = task2vec.sample_labels(logits, torch.Generator().manual_seed(0))
    assert y.tolist() == [0, 1] * 50
    flat = torch.zeros(400, 2)
    a = task2vec.sample_labels(flat, torch.Generator().manual_seed(3))
    b = task2vec.sample_labels(flat, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and 150 < int(a.sum()) < 250


def test_filter_means_are_one_value_per_output_channel():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    np.testing.assert_allclose(task2vec.filter_means(w), [5.5, 17.5])


def test_weight_layers_leave_out_the_classifier_and_skipped_layers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.Flatten(), nn.Linear(5, 10))
    assert [n for n, _ in task2vec.weight_layers(net, 0)] == ["0", "2"]
    assert [n for n, _ in task2vec.weight_layers(net, 1)] == ["2"]
    with pytest.raises(task2vec.ProbeError, match="skip_layers is 2"):
        task2vec.weight_layers(net, 2)


def test_the_noisy_layer_adds_no_noise_at_zero_variance_and_fits_its_kl():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    layer = task2vec._NoisyLayer("c", conv, torch.Generator().manual_seed(0))
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        layer.logvar0.fill_(-80.0)
    np.testing.assert_allclose(conv(x).detach(), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1).detach(),
                               atol=1e-5)
    with torch.no_grad():
        layer.logvar0.fill_(0.0)
        layer.loglambda2.fill_(0.0)
    w = conv.weight.detach()
    k = w.numel()
    assert float(layer.kl().detach()) == pytest.approx(float(w.square().sum()) + k + 0 - 0 - k, rel=1e-5)
    layer.handle.remove()


# -- distances, by hand ---------------------------------------------------------------------

def test_symmetric_distance_by_hand():
    fa, fb = np.array([1.0, 3.0]), np.array([1.0, 1.0])
    # Fa/(Fa+Fb) = (0.5, 0.75), Fb/(Fa+Fb) = (0.5, 0.25)
    u, v = np.array([0.5, 0.75]), np.array([0.5, 0.25])
    expected = 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    assert embeddings.symmetric(fa, fb) == pytest.approx(expected)
    assert expected == pytest.approx(1 - 0.4375 / (0.901387818866 * 0.559016994375))
    assert embeddings.symmetric(fa, fa) == pytest.approx(0.0)
    assert embeddings.symmetric(fa, fb) == pytest.approx(embeddings.symmetric(fb, fa))


def test_normalized_cosine_by_hand():
    fa, sa = np.array([2.0, 4.0]), np.array([1.0, 1.0])
    fb, sb = np.array([1.0, 1.0]), np.array([2.0, 4.0])
    # scale / F: (0.5, 0.25) and (2, 4): parallel up to order? no: cos = (1 + 1) / (|.|*|.|)
    u, v = np.array([0.5, 0.25]), np.array([2.0, 4.0])
    assert embeddings.normalized_cosine(fa, sa, fb, sb) == pytest.approx(
        1 - (u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    # invariant to a common scale of Fisher and prior
    assert embeddings.normalized_cosine(fa, sa, 3 * fa, 3 * sa) == pytest.approx(0.0, abs=1e-12)


def test_asymmetric_distance_by_hand():
    fa, sa, fb = np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([1.0, 1.0])
    d_ab = embeddings.symmetric(fa, fb)
    # trivial embedding of a: every filter at its layer's reference value, (2, 2)
    u, v = np.array([1 / 3, 3 / 5]), np.array([2 / 3, 2 / 5])
    d_a0 = 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    assert embeddings.symmetric(fa, sa) == pytest.approx(d_a0)
    assert embeddings.asymmetric(fa, sa, fb, 0.3) == pytest.approx(d_ab - 0.3 * d_a0)
    assert embeddings.asymmetric(fa, sa, fb, 0.0) == pytest.approx(d_ab)
    a = {"embedding": fa, "scale": sa}
    b = {"embedding": fb, "scale": sa}
    assert embeddings.distance("asymmetric", a, b, 0.3) == pytest.approx(d_ab - 0.3 * d_a0)
    assert embeddings.distance("asymmetric", b, a, 0.3) != pytest.approx(embeddings.distance("asymmetric", a, b, 0.3))


def test_index_vectors_approximate_the_normalized_cosine():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, size=2000)
    scale = np.ones(2000)
    pairs = []
    for noise in (0.05, 0.3, 1.0):
        other = base * np.exp(noise * rng.standard_normal(2000))
        exact = 1 - embeddings.normalized_cosine(base, scale, other, scale)
        a, b = embeddings.index_vector(base, scale), embeddings.index_vector(other, scale)
        assert len(a) == embeddings.INDEX_DIM and np.linalg.norm(a) == pytest.approx(1.0)
        pairs.append((exact, float(a @ b)))
    for exact, approx in pairs:
        assert approx == pytest.approx(exact, abs=0.1)
    assert [p[1] for p in pairs] == sorted([p[1] for p in pairs], reverse=True)


def test_checks_refuse_what_is_not_a_whole_embedding():
    embeddings.check([1.0, 0.0], [1.0, 1.0], dim=2)
    for fisher, scale, dim, match in (([1.0, np.nan], [1, 1], 2, "non-finite"), ([1.0], [1, 1], None, "shape"),
                                      ([1.0, 2.0], [1, 1], 3, "shape"), ([0.0, 0.0], [1, 1], 2, "all zeros"),
                                      ([-1.0, 2.0], [1, 1], 2, "negative")):
        with pytest.raises(ValueError, match=match):
            embeddings.check(fisher, scale, dim)


def test_settings_difference_names_the_first_differing_setting():
    a = {"probe": "p", "method": "montecarlo", "max_samples": 100}
    assert embeddings.settings_difference(a, dict(a)) is None
    assert embeddings.settings_difference(a, dict(a, max_samples=50)) == "max_samples"
    assert embeddings.settings_difference(a, dict(a, method="variational", probe="q")) == "method"


class FakeLoaded:
    """What gpu_daemon.models.load_model gives, for a tiny convolutional probe on 1 x 4 x 4 inputs."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 5), nn.Tanh())
        self.module.fc = nn.Linear(5, 10)  # the source task's classifier: not a filter of the embedding
        self.model_id, self.source, self.modality = "tiny", "timm", "Vision"
        self.device, self.tensor_device = "cpu", None

    def extractor(self, x):
        return self.module[:5](x), None

    def preprocess(self, xs):
        return torch.as_tensor(np.asarray(xs, dtype=np.float32)).view(-1, 1, 4, 4)


def stream():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 4, 4)).astype(np.float32), np.arange(20) % 3
    return lambda: iter([(x[:12], y[:12]), (x[12:], y[12:])])


SETTINGS = dict(probe="tiny", method="montecarlo", skip_layers=0, max_samples=20, batch_size=8, epochs=2, seed=5)


def test_embed_monte_carlo_is_the_per_filter_mean_of_per_sample_squared_gradients():
    loaded, blocks = FakeLoaded(), stream()
    got = task2vec.embed(loaded, blocks, 3, SETTINGS, "r")
    assert got["num_samples"] == 20 and got["layers"] == ["0", "3"] and len(got["fisher"]) == 3 + 5
    # independently: the same head, the same sampled labels, one autograd pass per sample
    feats = torch.cat([loaded.module[:5](loaded.preprocess(x)) for x, _ in blocks()]).detach()
    ys = np.concatenate([y for _, y in blocks()])
    torch.manual_seed(5)
    head = task2vec.fit_head(feats, ys, 3, 5)
    net = nn.Sequential(loaded.module[:5], head)
    gen = torch.Generator().manual_seed(5)
    sums = [torch.zeros_like(loaded.module[0].weight), torch.zeros_like(loaded.module[3].weight)]
    for _ in range(2):
        for xs, _ in task2vec.batches(blocks, 8):
            x = loaded.preprocess(xs)
            with torch.no_grad():
                labels = torch.multinomial(torch.softmax(net(x), dim=-1), 1, generator=gen).view(-1)
            for i in range(len(labels)):
                net.zero_grad()
                torch.nn.functional.cross_entropy(net(x[i:i + 1]), labels[i:i + 1]).backward()
                sums[0] += loaded.module[0].weight.grad ** 2
                sums[1] += loaded.module[3].weight.grad ** 2
    expected = np.concatenate([(s / 40).reshape(s.shape[0], -1).mean(1).numpy() for s in sums])
    np.testing.assert_allclose(got["fisher"], expected, rtol=1e-4, atol=1e-10)
    # the layer mean of float32 values: equal to float32 rounding, not to float64's
    np.testing.assert_allclose(got["scale"][:3], expected[:3].mean(), rtol=1e-6)
    embeddings.check(got["fisher"], got["scale"], dim=8)


def test_embed_variational_gives_precisions_and_layer_priors():
    got = task2vec.embed(FakeLoaded(), stream(), 3, dict(SETTINGS, method="variational", skip_layers=1), "r")
    assert got["layers"] == ["3"] and len(got["fisher"]) == 5
    embeddings.check(got["fisher"], got["scale"], dim=5)
    assert len(set(got["scale"].tolist())) == 1  # one prior per layer


def test_embed_refuses_one_class_and_what_is_not_a_module():
    x = np.zeros((6, 4, 4), np.float32)
    with pytest.raises(task2vec.ProbeError, match="one class only"):
        task2vec.embed(FakeLoaded(), lambda: iter([(x, np.zeros(6, int))]), 1, SETTINGS, "r")
    loaded = FakeLoaded()
    loaded.module = object()
    with pytest.raises(task2vec.ProbeError, match="not a PyTorch module"):
        task2vec.embed(loaded, stream(), 3, SETTINGS, "r")
