"""Spiking transformers: Spikformer, the Spike-driven Transformer and QKFormer (snn_lats.networks).

Oracles: the papers' parameter counts (and a count derived by hand from the authors' layout);
SpikingJelly 2.0's model zoo, where it imports (under the pinned 0.0.0.0.14 those tests skip;
scripts/test.sh runs this file again under .venv-sj2): its weights mapped into ours give the same
outputs wherever its architecture is the authors'; hand-computed attention of binary spikes; and
the contract of every network (shapes, time handling, state reset, gradients, pruning).
"""

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from snn_lats import networks
from snn_lats._spikingjelly import BaseNode, functional
from snn_lats.networks.neurons import reset_state
from snn_lats.networks.spike_driven import SpikeDrivenProducts
from snn_lats.networks.spikformer import transformer_neuron
from snn_lats.pruning import attach, select_layers

pytestmark = pytest.mark.usefixtures("one_thread")

SPIKFORMERS = ["spikformer_8_384", "spikformer_8_512", "spikformer_8_768", "spikformer_4_384_cifar"]
SDTS = ["sdt_8_384", "sdt_8_512", "sdt_8_768", "sdt_2_512_cifar"]
QKFORMERS = ["qkformer_10_384", "qkformer_10_512", "qkformer_10_768"]
TRANSFORMERS = SPIKFORMERS + SDTS + QKFORMERS
SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)


def tiny(name, lively=False, **kwargs):
    """The network at 32 channels, 2 blocks of 2 heads (QKFormer: 4 blocks, its least), 4 steps,
    on 16x16 one-channel images (patch 4: 16 tokens; in QKFormer's last stage too). ``lively``:
    neuron threshold 0.3 (the attention neuron keeps its 0.5), so that every layer spikes in a
    network this small (at threshold 1, Q, K and V fire about 3 %, and Spikformer's attention
    neuron stays silent with 16 tokens of 16 channels)."""
    torch.manual_seed(0)
    config = {"num_classes": 5, "T": 4, "width": 32, "depth": 2, "num_heads": 2, "stem": "cifar", "in_channels": 1}
    if name.startswith("qkformer"):
        config["depth"] = 4
    if lively:
        config["neuron_kwargs"] = {"v_threshold": 0.3}
    return networks.create(name, **{**config, **kwargs})


def images(n=3, seed=1):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def count(model):
    return sum(p.numel() for p in model.parameters())


def firing_rates(model, x):
    rates = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, key=key: rates.__setitem__(key, float(o.mean())))
        for key, m in model.named_modules()
        if isinstance(m, BaseNode)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return rates


# ---------------------------------------------------------------- registry and published sizes


def test_transformers_are_registered_after_the_sew_event_nets():
    names = networks.names()
    start = names.index("sew_wide_7b_net") + 1
    assert names[start : start + len(TRANSFORMERS)] == TRANSFORMERS
    assert isinstance(networks.create("spikformer_8_384", width=32, num_heads=2), networks.Spikformer)
    assert isinstance(networks.create("sdt_8_384", width=32, num_heads=2), networks.SpikeDrivenTransformer)
    assert isinstance(networks.create("qkformer_10_384", width=32, depth=4, num_heads=2), networks.QKFormer)


def hand_count(D, L, classes, qkv_bias=False):
    """The authors' layout counted by hand: SPS convs (no bias) and their BNs; per block 12 D²
    weights (Q, K, V, projection D², MLP 2·4 D²), biases of the projection and the MLP (D + 4D + D),
    Q/K/V biases (3D) where present, BNs of Q, K, V, projection, MLP (2·(3D + D + 4D + D)); the head."""
    sps = 9 * (3 * D // 8 + (D // 8) * (D // 4) + (D // 4) * (D // 2) + (D // 2) * D + D * D)
    sps += 2 * (D // 8 + D // 4 + D // 2 + D + D)
    block = 12 * D * D + 6 * D + (3 * D if qkv_bias else 0) + 18 * D
    return sps + L * block + D * classes + classes


def qkformer_hand_count(D, L, classes):
    """QKFormer counted by hand: the first embedding (3x3 convs 3 to D/8, D/8 to D/4, D/4 to D/4, the
    1x1 shortcut D/8 to D/4, their BNs); a Q-K token-attention block at c channels, 11 c² weights
    (Q, K, projection, MLP), 6c biases and 16c BN parameters; a down-sampling stage a to b, 3x3 convs
    a·b and b·b, the 1x1 shortcut a·b, 3 BNs; L - 3 Spikformer blocks at D; the head."""
    d1, d2 = D // 4, D // 2
    init = 9 * (3 * D // 8 + (D // 8) * d1 + d1 * d1) + (D // 8) * d1 + 2 * (D // 8 + 3 * d1)

    def token_block(c):
        return 11 * c * c + 6 * c + 16 * c

    def down(a, b):
        return 10 * a * b + 9 * b * b + 6 * b

    ssa_blocks = (L - 3) * (12 * D * D + 24 * D)
    return (
        init + token_block(d1) + down(d1, d2) + 2 * token_block(d2) + down(d2, D) + ssa_blocks + D * classes + classes
    )


@pytest.mark.parametrize(
    "name, millions", [("qkformer_10_384", 16.47), ("qkformer_10_512", 29.08), ("qkformer_10_768", 64.96)]
)
def test_qkformer_parameter_counts_equal_the_papers(name, millions):
    with torch.device("meta"):
        model = networks.create(name)
    total = count(model)
    assert total == qkformer_hand_count(model.head.in_features, 10, 1000)
    assert round(total / 1e6, 2) == millions


@pytest.mark.parametrize(
    "name, kwargs, millions, depth, qkv_bias",
    [
        ("spikformer_8_384", {}, 16.81, 8, False),
        ("spikformer_8_512", {}, 29.68, 8, False),
        ("spikformer_8_512", {"depth": 10}, 36.01, 10, False),  # the paper's Spikformer-10-512
        ("spikformer_8_768", {}, 66.34, 8, False),
        ("spikformer_4_384_cifar", {}, 9.32, 4, True),
        ("sdt_8_384", {}, 16.81, 8, False),
        ("sdt_8_512", {}, 29.68, 8, False),
        ("sdt_8_768", {}, 66.34, 8, False),
        ("sdt_2_512_cifar", {"num_classes": 100}, 10.28, 2, False),  # the paper's count: CIFAR-100 head
        ("sdt_2_512_cifar", {}, 10.28, 2, False),  # CIFAR-10 head: 10.233 M, -0.45 %
    ],
)
def test_parameter_counts_match_the_papers_within_half_a_percent(name, kwargs, millions, depth, qkv_bias):
    with torch.device("meta"):  # no memory, no initialisation cost
        model = networks.create(name, **kwargs)
    total = count(model)
    assert abs(total / 1e6 - millions) / millions < 0.005
    D = model.head.in_features
    assert total == hand_count(D, depth, model.head.out_features, qkv_bias)
    if name in ("spikformer_4_384_cifar", "spikformer_8_768", "sdt_8_768") or kwargs:
        assert round(total / 1e6, 2) == millions  # exact to the paper's two decimals


# ---------------------------------------------------------------- the contract of every network


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_static_and_sequence_inputs_give_time_mean_logits(name):
    model = tiny(name)
    assert model.T == 4 and isinstance(model.T, int) and model.spiking is True and model.in_channels == 1
    x = images()
    logits = model(x)
    assert logits.shape == (3, 5)
    # A static batch is the same batch repeated over T, its encoding computed once (as the SEW
    # ResNets do; the SOP counter then charges the encoding conv once per sample).
    first = model.patch_embed1.proj_conv if name.startswith("qkformer") else model.patch_embed.proj_conv
    steps = []
    hook = first.register_forward_hook(lambda m, args, out: steps.append(args[0].shape[0]))
    repeated = model(x.unsqueeze(0).repeat(4, 1, 1, 1, 1))
    hook.remove()
    assert steps == [4]
    torch.testing.assert_close(repeated, logits, rtol=0, atol=1e-6)
    steps.clear()
    hook = first.register_forward_hook(lambda m, args, out: steps.append(args[0].shape[0]))
    model(x)
    hook.remove()
    assert steps == [1]
    sequence = torch.rand(4, 2, 1, 16, 16)
    assert model(sequence).shape == (2, 5)
    # Image sides that the pools do not divide are fine: ceil(ceil(15/2)/2) = 4.
    assert model(torch.rand(2, 1, 15, 15)).shape == (2, 5)


@pytest.mark.parametrize("name", ["spikformer_8_384", "sdt_8_384", "qkformer_10_384"])
def test_imagenet_stem_is_patch_16_and_cifar_stem_patch_4(name):
    for stem, side, tokens, pools in (("imagenet", 64, 16, 4), ("cifar", 16, 16, 2)):
        model = tiny(name, stem=stem)
        model(torch.rand(2, 1, side, side))  # a batch of another size first: forward_features resets the state
        assert model.forward_features(torch.rand(4, 1, 1, side, side)).flatten(3).shape == (4, 1, 32, tokens)
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools


@pytest.mark.parametrize("name", ["spikformer_8_384", "sdt_2_512_cifar", "qkformer_10_512"])
@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 4, 1, 16, 16), r"T=4 time steps"),
        ((3, 3, 16, 16), r"in_channels=1"),
        ((4, 3, 2, 16, 16), r"in_channels=1"),
        ((16, 16), r"\[N, C, H, W\]"),
    ],
)
def test_wrong_time_steps_or_channels_are_rejected(name, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny(name)(torch.rand(shape))


@pytest.mark.parametrize("name", ["spikformer_8_512", "sdt_8_768"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"T": 0}, r"T must be an integer >= 1"),
        ({"T": 2.0}, r"T must be an integer >= 1"),
        ({"width": 36}, r"width must be a multiple of 8"),
        ({"width": 40, "num_heads": 3}, r"width must be a multiple of num_heads"),
        ({"depth": 0}, r"depth must be an integer >= 1"),
        ({"in_channels": 0}, r"in_channels must be an integer >= 1"),
        ({"stem": "tiny"}, r"stem must be one of \('imagenet', 'cifar'\)"),
        ({"neuron": "relu"}, r"neuron must be one of"),
    ],
)
def test_bad_arguments_name_the_argument(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(name, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 3}, r"depth must be at least 4"),
        ({"width": 36}, r"width must be a multiple of 8"),
        ({"width": 32, "num_heads": 3}, r"width/4 must be a multiple of num_heads"),
        ({"stem": "tiny"}, r"stem must be one of"),
        ({"T": 0}, r"T must be an integer >= 1"),
    ],
)
def test_qkformer_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny("qkformer_10_384", **kwargs)


@pytest.mark.parametrize("name", ["spikformer_4_384_cifar", "sdt_8_384", "qkformer_10_768"])
def test_neuron_state_is_reset_at_every_forward(name):
    model = tiny(name, lively=True)
    x, other = images(seed=1), images(seed=2)
    with torch.no_grad():
        first = model(x)
        model(other)
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    assert first.std() > 1e-3


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_gradients_reach_every_parameter(name):
    model = tiny(name, lively=True)
    nn.functional.cross_entropy(model(images()), torch.tensor([0, 1, 4])).backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, key


@pytest.mark.parametrize("name", ["spikformer_4_384_cifar", "sdt_2_512_cifar", "qkformer_10_384"])
def test_a_tiny_network_learns_random_labels(name):
    model = tiny(name, lively=True, T=2)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 5, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_the_papers_tiny_example_runs_on_28x28_digits():
    model = networks.spikformer_8_384(num_classes=10, T=2, width=64, depth=2, num_heads=4, stem="cifar", in_channels=1)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_neuron_kinds_and_defaults():
    model = tiny("spikformer_8_384")
    attention = model.block[0].attn
    assert attention.q_lif.tau == 2.0 and attention.q_lif.v_threshold == 1.0 and attention.q_lif.detach_reset
    assert attention.attn_lif.v_threshold == 0.5
    assert type(attention.q_lif.surrogate_function).__name__ == "Sigmoid"  # the authors' (SpikingJelly's default)
    sdt = tiny("sdt_8_384", neuron="plif", neuron_kwargs={"v_threshold": 0.75})
    products = sdt.block[0].attn.products
    assert products.talking_heads_lif.v_threshold == 0.5  # the attention threshold is the architecture's
    assert sdt.head_lif.v_threshold == 0.75 and type(sdt.head_lif).__name__ == "ParametricLIFNode"
    assert sdt.head_lif.w.sigmoid().item() == pytest.approx(0.5)  # init_tau = 2
    assert sdt(images()).shape == (3, 5)
    with pytest.raises(TypeError, match="step_mode"):
        transformer_neuron("lif", "auto", {"step_mode": "s"})()


# ---------------------------------------------------------------- the attention


def test_spikformer_attention_is_two_matmuls_per_head_in_the_papers_association():
    products = []

    class Matmuls(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__):
                products.append((tuple(args[0].shape), tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    model = tiny("spikformer_8_384", lively=True)
    with torch.no_grad(), Matmuls():
        model(torch.rand(3, 1, 8, 8))  # L = 2x2 tokens of d = 16 channels per head
    # Per block: Q Kᵀ, [T, N, heads, L, d] by [.., d, L]; then that by V, [.., L, L] by [.., L, d].
    assert products == [((4, 3, 2, 4, 16), (4, 3, 2, 16, 4)), ((4, 3, 2, 4, 4), (4, 3, 2, 4, 16))] * 2


def test_spikformer_attention_equals_the_formula_on_binary_spikes():
    """One step, LIF(tau=2) from rest: H = X/2, a spike where X >= 2·threshold."""
    attention = tiny("spikformer_8_384", T=1, lively=True).block[0].attn.train()
    threshold = attention.q_lif.v_threshold
    x = (torch.rand(1, 2, 32, 16) < 0.5).float()
    with torch.no_grad():
        reset_state(attention)
        actual = attention(x)

        def layer(conv, bn):
            return (bn(conv(x)) >= 2 * threshold).float()

        q = layer(attention.q_conv, attention.q_bn).reshape(1, 2, 2, 16, 16).transpose(-1, -2)
        k = layer(attention.k_conv, attention.k_bn).reshape(1, 2, 2, 16, 16).transpose(-1, -2)
        v = layer(attention.v_conv, attention.v_bn).reshape(1, 2, 2, 16, 16).transpose(-1, -2)
        scores = torch.einsum("tnhld,tnhmd,tnhme->tnhle", q, k, v) * 0.125
        spikes = (scores >= 1.0).float().transpose(-1, -2).reshape(1, 2, 32, 16)
        expected = (attention.proj_bn(attention.proj_conv(spikes)) >= 2 * threshold).float()
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert 0 < float(spikes.mean()) < 1


def test_spike_driven_products_are_masks_and_a_column_sum():
    products = SpikeDrivenProducts(transformer_neuron("lif", "auto", None))
    g = torch.Generator().manual_seed(3)
    q, k, v = ((torch.rand(1, 2, 4, 3, 8, generator=g) < 0.5).float() for _ in range(3))
    reset_state(products)
    actual = products(q, k, v)
    # One step from rest: H = X/2 >= 0.5, i.e. a column sum of at least 1.
    column = torch.zeros(1, 2, 4, 1, 8)
    for token in range(3):
        column += torch.logical_and(k[..., token : token + 1, :] > 0, v[..., token : token + 1, :] > 0).float()
    expected = torch.logical_and(q > 0, column >= 1).float()
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert 0 < float(expected.mean()) < float(q.mean())


def test_qkformer_token_attention_equals_the_formula_and_its_ssa_is_kv_first():
    model = tiny("qkformer_10_384", T=1, lively=True)
    attention = model.stage2[0].tssa.train()
    threshold = attention.q_lif.v_threshold
    x = (torch.rand(1, 2, 16, 9) < 0.5).float()  # [T, N, C, L]: 2 heads of 8 channels, 9 tokens
    with torch.no_grad():
        reset_state(attention)
        actual = attention(x)
        q = (attention.q_bn(attention.q_conv(x)) >= 2 * threshold).float().reshape(1, 2, 2, 8, 9)
        k = (attention.k_bn(attention.k_conv(x)) >= 2 * threshold).float().reshape(1, 2, 2, 8, 9)
        token = (q.sum(3, keepdim=True) >= 1.0).float()  # attention LIF at 0.5: H = X/2 >= 0.5
        expected = (attention.proj_bn(attention.proj_conv((token * k).reshape(1, 2, 16, 9))) >= 2 * threshold).float()
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert 0 < float(token.mean()) < 1
    products = []

    class Matmuls(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__):
                products.append((tuple(args[0].shape), tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Matmuls():
        model(images(n=3))
    # Only the last stage multiplies matrices: Kᵀ V ([.., d, L] by [.., L, d]), then Q by that.
    assert products == [((1, 3, 2, 16, 16), (1, 3, 2, 16, 16))] * 2  # d = 32 / 2 = 16, L = 4x4 = 16
    assert all(block.attn.products.kv_first for block in model.stage3)


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize("name", ["spikformer_8_384", "sdt_2_512_cifar"])
def test_pruning_selects_every_synaptic_layer(name):
    model = tiny(name, depth=1, lively=True)
    selected = select_layers(model)
    synaptic = [k for k, m in model.named_modules() if isinstance(m, SYNAPTIC)]
    assert list(selected) == synaptic
    sps = ["patch_embed.proj_conv", "patch_embed.proj_conv1", "patch_embed.proj_conv2", "patch_embed.proj_conv3"]
    attention = [f"block.0.attn.{x}_conv" for x in ("q", "k", "v", "proj")]
    mlp = ["block.0.mlp.fc1_conv", "block.0.mlp.fc2_conv"]
    assert set(synaptic) == {*sps, "patch_embed.rpe_conv", *attention, *mlp, "head"}
    assert list(select_layers(model, dense_first_last=True)) == synaptic[1:-1]
    check_attach(model)


def test_pruning_selects_every_qkformer_layer():
    model = tiny("qkformer_10_384", lively=True)
    synaptic = [k for k, m in model.named_modules() if isinstance(m, SYNAPTIC)]
    assert list(select_layers(model)) == synaptic
    embeddings = [f"patch_embed1.{x}_conv" for x in ("proj", "proj1", "proj2", "proj_res")]
    embeddings += [f"patch_embed{i}.{x}_conv" for i in (2, 3) for x in ("proj3", "proj4", "proj_res")]
    token = [f"stage{s}.{j}.tssa.{x}_conv" for s, j in ((1, 0), (2, 0), (2, 1)) for x in ("q", "k", "proj")]
    ssa = [f"stage3.0.attn.{x}_conv" for x in ("q", "k", "v", "proj")]
    mlp = [f"{b}.mlp.fc{i}_conv" for b in ("stage1.0", "stage2.0", "stage2.1", "stage3.0") for i in (1, 2)]
    assert set(synaptic) == {*embeddings, *token, *ssa, *mlp, "head"}
    check_attach(model)


def check_attach(model):
    """The pruner's reparametrisation runs in the forward and trains the latent weights of every layer."""
    layers = attach(model)
    for module in layers.values():
        module.parametrizations.weight[0].set_threshold(0.01)
    nn.functional.cross_entropy(model(images()), torch.tensor([0, 1, 4])).backward()
    for key, module in layers.items():
        assert float(module.parametrizations.weight.original.grad.abs().sum()) > 0, key


# ---------------------------------------------------------------- SpikingJelly 2.x's zoo


def randomise_batchnorms(model, shift, seed=4):
    """BN scales in [0.5, 1.5] and shifts in ``shift``: every layer of a tiny network spikes."""
    g = torch.Generator().manual_seed(seed)
    low, high = shift
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(low + (high - low) * torch.rand(m.bias.shape, generator=g, dtype=m.bias.dtype))
    return model


def bn_entries(state, prefix):
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def spikformer_state_from_sj2(theirs, ours):
    """SpikingJelly 2.x Spikformer state dict in our keys: SPS stages renamed, the fused qkv conv and
    BN split into thirds (rows 0..D-1 are Q, then K, then V), zero for our biases it lacks."""
    source = theirs.state_dict()
    target = {k: torch.zeros_like(v) for k, v in ours.state_dict().items() if k.endswith(".bias")}
    for i in range(4):
        suffix = str(i) if i else ""
        for theirs_key, ours_key in (("0", f"proj_conv{suffix}"), ("1", f"proj_bn{suffix}")):
            for k, v in bn_entries(source, f"patch_embed.stages.{i}.conv_bn.block.{theirs_key}.").items():
                target[f"patch_embed.{ours_key}.{k}"] = v
    for theirs_key, ours_key in (("0", "rpe_conv"), ("1", "rpe_bn")):
        for k, v in bn_entries(source, f"patch_embed.positional_encoding.conv_bn.block.{theirs_key}.").items():
            target[f"patch_embed.{ours_key}.{k}"] = v
    for j in range(len(ours.block)):
        prefix = f"blocks.{j}."
        for part, (conv, bn) in enumerate((("q_conv", "q_bn"), ("k_conv", "k_bn"), ("v_conv", "v_bn"))):
            target[f"block.{j}.attn.{conv}.weight"] = source[prefix + "attn.qkv_conv_bn.0.weight"].chunk(3)[part]
            for k, v in bn_entries(source, prefix + "attn.qkv_conv_bn.1.").items():
                target[f"block.{j}.attn.{bn}.{k}"] = v if v.dim() == 0 else v.chunk(3)[part]
        renames = (
            ("attn.proj_conv_bn.0.", "attn.proj_conv."),
            ("attn.proj_conv_bn.1.", "attn.proj_bn."),
            ("mlp.fc1.0.", "mlp.fc1_conv."),
            ("mlp.fc1.1.", "mlp.fc1_bn."),
            ("mlp.fc2.0.", "mlp.fc2_conv."),
            ("mlp.fc2.1.", "mlp.fc2_bn."),
        )
        for theirs_prefix, ours_prefix in renames:
            for k, v in bn_entries(source, prefix + theirs_prefix).items():
                target[f"block.{j}.{ours_prefix}{k}"] = v
    target["head.weight"], target["head.bias"] = source["head.weight"], source["head.bias"]
    return target


def sdt_state_from_sj2(theirs):
    """SpikingJelly 2.x Spike-driven Transformer state dict in our keys. Its SPS stage convs have
    biases, the authors' not: the caller zeroes them in its model, and they are left out here."""
    renames = [("blocks.", "block.")]
    for index, stage in enumerate(("stages.0.", "stages.1.", "stages.2.", "final_stage.")):
        suffix = str(index) if index else ""
        renames += [(f"patch_embed.{stage}0.", f"patch_embed.proj_conv{suffix}.")]
        renames += [(f"patch_embed.{stage}1.", f"patch_embed.proj_bn{suffix}.")]
    renames += [(f".mlp.{a}{i}.", f".mlp.fc{i}_{b}.") for i in (1, 2) for a, b in (("fc", "conv"), ("bn", "bn"))]
    target = {}
    for key, value in theirs.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        if key.startswith("patch_embed.proj_conv") and key.endswith(".bias"):
            assert not value.any()
            continue
        target[key] = value
    return target


def multi_step(module, x):
    """A single-step module run on the folded sequence ``[T*N, ...]``."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def sj2_spikformer_pair():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.spikformer")
    torch.manual_seed(5)
    theirs = sj2.Spikformer(
        T=4,
        in_channels=1,
        img_size_h=16,
        img_size_w=16,
        patch_size=4,
        num_classes=5,
        embed_dims=32,
        num_heads=2,
        depths=2,
    )
    # Q, K, V spike about 30 %: enough for Spikformer's attention neuron with 16 tokens.
    theirs = randomise_batchnorms(theirs, shift=(0.8, 1.6)).double().train()
    ours = tiny("spikformer_4_384_cifar", qkv_bias=False).double().train()
    ours.load_state_dict(spikformer_state_from_sj2(theirs, ours), strict=True)
    return theirs, ours


def test_spikformer_blocks_equal_spikingjelly2_with_mapped_weights():
    theirs, ours = sj2_spikformer_pair()
    x = images(n=2).double()
    x_seq = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
    with torch.no_grad():
        reset_state(ours)
        features = ours.patch_embed(x_seq)  # [T, N, D, 4, 4]
    rates = firing_rates(ours, x)
    assert min(rates.values()) > 0.01, rates  # every neuron spikes, the attention's included
    tokens = features.flatten(3)
    for j in range(2):
        reset_state(ours), functional.reset_net(theirs)
        # The parts: SSA and MLP.
        torch.testing.assert_close(ours.block[j].attn(tokens), theirs.blocks[j].attn(tokens), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.block[j].mlp(tokens), theirs.blocks[j].mlp(tokens), rtol=1e-12, atol=1e-12)
        # A whole block, and its gradients (the same neurons: LIF tau 2, detach_reset, Sigmoid surrogate).
        reset_state(ours), functional.reset_net(theirs)
        ours.zero_grad(), theirs.zero_grad()
        actual = ours.block[j](tokens)
        expected = theirs.blocks[j](features).flatten(3)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
        actual.square().sum().backward()
        expected.square().sum().backward()
        qkv = theirs.blocks[j].attn.qkv_conv_bn[0].weight.grad.chunk(3)
        for part, name in enumerate(("q_conv", "k_conv", "v_conv")):
            grad = getattr(ours.block[j].attn, name).weight.grad
            torch.testing.assert_close(grad, qkv[part], rtol=1e-9, atol=1e-12)
            assert float(grad.abs().sum()) > 0
        torch.testing.assert_close(ours.block[j].mlp.fc1_conv.weight.grad, theirs.blocks[j].mlp.fc1[0].weight.grad)
    # Everything after the SPS: blocks, mean over tokens, head, mean over time.
    with torch.no_grad():
        reset_state(ours), functional.reset_net(theirs)
        actual = ours.head(ours.block[1](ours.block[0](tokens)).mean(3).mean(0))
        expected = theirs.head(theirs.blocks[1](theirs.blocks[0](features)).flatten(3).mean(-1)).mean(0)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    assert expected.std() > 1e-3


def test_spikformer_sps_is_spikingjelly2s_layers_in_the_papers_order():
    """SJ2 max-pools before the LIF; the authors (and we) pool the spikes after it. Our SPS equals
    SJ2's own layers applied in the authors' order, and differs from SJ2's SPS."""
    theirs, ours = sj2_spikformer_pair()
    x_seq = images(n=2).double().unsqueeze(0).repeat(4, 1, 1, 1, 1)
    with torch.no_grad():
        reset_state(ours), functional.reset_net(theirs)
        actual = ours.patch_embed(x_seq)
        x = x_seq
        for stage in theirs.patch_embed.stages:
            conv, bn, *pool = stage.conv_bn.block
            x = stage.neuron(multi_step(bn, multi_step(conv, x)))
            for p in pool:
                x = multi_step(p, x)
        encoding = theirs.patch_embed.positional_encoding
        expected = x + encoding.neuron(encoding.conv_bn(x))
        functional.reset_net(theirs)
        theirs_sps = theirs.patch_embed(x_seq)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert not torch.equal(actual, theirs_sps)
    assert 0 < float((actual > 0).double().mean()) < 1


def test_spikformer_parameter_count_equals_spikingjelly2_but_for_our_biases():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.spikformer")
    with torch.device("meta"):
        theirs = sj2.spikformer_cifar10()
        ours = networks.spikformer_4_384_cifar()
    biases = sum(m.bias.numel() for m in ours.modules() if isinstance(m, nn.Conv1d) and m.bias is not None)
    assert biases == 4 * (3 * 384 + 384 + 4 * 384 + 384)  # Q, K, V, projection, MLP
    assert count(ours) - biases == count(theirs)


def sj2_sdt_pair():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.spike_driven_transformer")
    torch.manual_seed(6)
    theirs = sj2.SpikeDrivenTransformer(
        T=4, in_channels=1, num_classes=5, embed_dims=32, num_heads=2, depths=2, pooling_stat="0011"
    )
    with torch.no_grad():  # the authors' SPS convs have no bias
        for conv in [stage[0] for stage in theirs.patch_embed.stages] + [theirs.patch_embed.final_stage[0]]:
            conv.bias.zero_()
    # Smaller shifts: the membrane shortcuts add them up, and the head LIF must not saturate.
    theirs = randomise_batchnorms(theirs, shift=(0.0, 0.5)).double().train()
    ours = tiny("sdt_2_512_cifar").double().train()
    ours.load_state_dict(sdt_state_from_sj2(theirs), strict=True)
    return theirs, ours


def test_spike_driven_transformer_equals_spikingjelly2_with_mapped_weights():
    theirs, ours = sj2_sdt_pair()
    x = images(n=2).double()
    rates = firing_rates(ours, x)
    assert min(rates.values()) > 0.01 and rates["head_lif"] < 0.9, rates  # the features reach the logits
    with torch.no_grad():
        functional.reset_net(theirs)
        expected = theirs(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    assert (expected[0] - expected[1]).abs().max() > 1e-3
    x_seq = torch.rand(4, 2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        functional.reset_net(theirs)
        torch.testing.assert_close(ours(x_seq), theirs(x_seq), rtol=1e-12, atol=1e-12)
    # The attention alone, with its gradients (its neurons detach the reset in both).
    with torch.no_grad():
        reset_state(ours)
        features = ours.patch_embed(x.unsqueeze(0).repeat(4, 1, 1, 1, 1))
    reset_state(ours), functional.reset_net(theirs)
    actual, expected = ours.block[0].attn(features), theirs.blocks[0].attn(features)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    actual.square().sum().backward()
    expected.square().sum().backward()
    for name in ("q_conv", "k_conv", "v_conv", "proj_conv"):
        grad = getattr(ours.block[0].attn, name).weight.grad
        torch.testing.assert_close(grad, getattr(theirs.blocks[0].attn, name).weight.grad, rtol=1e-9, atol=1e-12)
        assert float(grad.abs().sum()) > 0, name


def test_spike_driven_parameter_count_equals_spikingjelly2_but_for_its_sps_biases():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.spike_driven_transformer")
    with torch.device("meta"):
        theirs = sj2.sdt_8_384()
        ours = networks.sdt_8_384()
    assert count(ours) == count(theirs) - (384 // 8 + 384 // 4 + 384 // 2 + 384)


def qkformer_state_from_sj2(theirs, ours):
    """SpikingJelly 2.x QKFormer state dict in our keys: patch-embedding layers renamed (their conv
    biases, zeroed by the caller, left out), the fused Q-K (and Q-K-V) conv and BN split, zero for
    our projection biases it lacks."""
    source = theirs.state_dict()
    target = {k: torch.zeros_like(v) for k, v in ours.state_dict().items() if k.endswith("proj_conv.bias")}
    embeddings = {
        "patch_embed1": (("conv1", "proj_conv"), ("bn1", "proj_bn"), ("conv2", "proj1_conv"), ("bn2", "proj1_bn")),
        "patch_embed2": (("conv1", "proj3_conv"), ("bn1", "proj3_bn"), ("conv2", "proj4_conv"), ("bn2", "proj4_bn")),
    }
    embeddings["patch_embed1"] += (("conv3", "proj2_conv"), ("bn3", "proj2_bn"))
    embeddings["patch_embed3"] = embeddings["patch_embed2"]
    for embed, pairs in embeddings.items():
        for theirs_name, ours_name in (*pairs, ("shortcut.0", "proj_res_conv"), ("shortcut.1", "proj_res_bn")):
            for k, v in bn_entries(source, f"{embed}.{theirs_name}.").items():
                if "conv" in ours_name and k == "bias":
                    assert not v.any()
                    continue
                target[f"{embed}.{ours_name}.{k}"] = v
    for stage, blocks in (("stage1", 1), ("stage2", 2), ("stage3", len(ours.stage3))):
        fused, attention, parts = ("qkv", "attn", "qkv") if stage == "stage3" else ("qk", "tssa", "qk")
        for j in range(blocks):
            prefix = f"{stage}.{j}."
            for part, letter in enumerate(parts):
                weight = source[prefix + f"attn.{fused}_conv_bn.0.weight"].chunk(len(parts))[part]
                target[f"{prefix}{attention}.{letter}_conv.weight"] = weight
                for k, v in bn_entries(source, prefix + f"attn.{fused}_conv_bn.1.").items():
                    target[f"{prefix}{attention}.{letter}_bn.{k}"] = v if v.dim() == 0 else v.chunk(len(parts))[part]
            for theirs_name, ours_name in (
                ("attn.proj_conv_bn.0.", f"{attention}.proj_conv."),
                ("attn.proj_conv_bn.1.", f"{attention}.proj_bn."),
                ("mlp.fc1.", "mlp.fc1_conv."),
                ("mlp.bn1.", "mlp.fc1_bn."),
                ("mlp.fc2.", "mlp.fc2_conv."),
                ("mlp.bn2.", "mlp.fc2_bn."),
            ):
                for k, v in bn_entries(source, prefix + theirs_name).items():
                    target[prefix + ours_name + k] = v
    target["head.weight"], target["head.bias"] = source["head.weight"], source["head.bias"]
    return target


def test_qkformer_equals_spikingjelly2_with_mapped_weights():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.qkformer")
    torch.manual_seed(7)
    theirs = sj2.QKFormer(T=4, in_channels=1, num_classes=5, embed_dims=32, num_heads=(2, 2, 2), depths=(1, 2, 1))
    with torch.no_grad():  # the authors' patch-embedding convs have no bias
        for key, m in theirs.named_modules():
            if key.startswith("patch_embed") and isinstance(m, nn.Conv2d):
                m.bias.zero_()
    theirs = randomise_batchnorms(theirs, shift=(0.8, 1.6)).double().train()
    ours = tiny("qkformer_10_384", stem="imagenet").double().train()  # SJ2's is patch 16
    ours.load_state_dict(qkformer_state_from_sj2(theirs, ours), strict=True)
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    rates = firing_rates(ours, x)
    assert min(rates.values()) > 0.01, rates
    with torch.no_grad():
        functional.reset_net(theirs)
        expected = theirs(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    assert (expected[0] - expected[1]).abs().max() > 1e-3
    x_seq = torch.rand(4, 2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        functional.reset_net(theirs)
        torch.testing.assert_close(ours(x_seq), theirs(x_seq), rtol=1e-12, atol=1e-12)


def test_qkformer_parameter_count_equals_spikingjelly2_but_for_biases():
    sj2 = pytest.importorskip("spikingjelly.activation_based.model.qkformer")
    with torch.device("meta"):
        theirs = sj2.qkformer_10_384()
        ours = networks.qkformer_10_384()
    theirs_embedding_biases = sum(
        m.bias.numel() for k, m in theirs.named_modules() if k.startswith("patch_embed") and isinstance(m, nn.Conv2d)
    )
    projections = [m for k, m in ours.named_modules() if k.endswith(("tssa.proj_conv", "attn.proj_conv"))]
    ours_projection_biases = sum(m.bias.numel() for m in projections)
    assert ours_projection_biases == 96 + 2 * 192 + 7 * 384
    assert count(ours) == count(theirs) - theirs_embedding_biases + ours_projection_biases
