"""The two switches of the models (DESIGN.md): the op backend and the model rewrites are separate
choices. Each mix of them computes the original math (float64, to rounding), and each switch
changes only what it names: the backend the ops run on, or whether the layers are rewritten."""
import pytest
import torch

from fastmotion import backends
from fastmotion.models import conv_fusion as cf
from fastmotion.models import policy
from tests.models.helpers import build, copy_weights, tiny_config
from tests.models.test_backends import assert_same_math_float64, run_models

CONFIG, SIZE = tiny_config("taichi"), 32


def _run_recording(models, train, monkeypatch):
    """Outputs and gradients, the backends the ops ran on, and whether a layer was rewritten
    (ran as conv_fusion's fused convolution)."""
    chosen, rewritten = set(), []
    select, fused_conv = backends.select, cf.fused_conv

    def recording_select(*args, **kwargs):
        name = select(*args, **kwargs)
        chosen.add(name)
        return name

    def recording_fused_conv(*args, **kwargs):
        rewritten.append(True)
        return fused_conv(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(backends, "select", recording_select)
        patch.setattr(cf, "fused_conv", recording_fused_conv)
        out, grads = run_models(models, SIZE, torch.float64, train)
    return out, grads, chosen, bool(rewritten)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("backend,rewrites", [("reference", True), ("cpu", False)])  # cpu + rewrites: test_backends
def test_each_mix_of_switches_computes_the_original(backend, rewrites, train, monkeypatch):
    if backends.unavailable_reason(backend, "cpu"):
        pytest.skip(backends.unavailable_reason(backend, "cpu"))
    original = build(CONFIG, backend="reference", dtype=torch.float64)
    mixed = build(CONFIG, backend=backend, dtype=torch.float64)
    for model in mixed:
        model.set_rewrites(rewrites)
    copy_weights(original, mixed)
    out_ref, grad_ref, chosen_ref, rewritten_ref = _run_recording(original, train, monkeypatch)
    out, grads, chosen, rewritten = _run_recording(mixed, train, monkeypatch)
    assert chosen_ref == {"reference"} and not rewritten_ref
    assert chosen == {backend} and rewritten == rewrites
    assert_same_math_float64(out, grads, out_ref, grad_ref)


def test_rewrites_follow_the_backend_unless_set(monkeypatch):
    monkeypatch.delenv(policy.REWRITES_ENV, raising=False)
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    kp_reference, _, _ = build(CONFIG, backend="reference")
    kp_default, _, _ = build(CONFIG)
    assert not kp_reference.fast_path() and kp_default.fast_path()
    with backends.use_backend("reference"):
        assert not kp_default.fast_path()
    monkeypatch.setenv(policy.REWRITES_ENV, "1")
    assert kp_reference.fast_path()
    monkeypatch.setenv(policy.REWRITES_ENV, "0")
    assert not kp_default.fast_path()
    kp_default.set_rewrites(True)  # set on the module: wins over the environment
    assert kp_default.fast_path() and kp_default.predictor.encoder.down_blocks[0].fast_path()
    kp_default.set_rewrites(None)
    assert not kp_default.fast_path()


def test_bad_switch_values_name_themselves(monkeypatch):
    kp_detector, _, _ = build(CONFIG)
    with pytest.raises(TypeError, match="rewrites"):
        kp_detector.set_rewrites("yes")
    monkeypatch.setenv(policy.REWRITES_ENV, "maybe")
    with pytest.raises(ValueError, match=policy.REWRITES_ENV):
        kp_detector.fast_path()
