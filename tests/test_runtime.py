"""covid_keras.runtime: the precision each use gets from the processor's flags, the environment and the caller."""

import pytest

from covid_keras import runtime

AMX_CPU = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}  # Intel Xeon (Sapphire Rapids)
ZEN4_CPU = {"avx2", "avx512f", "avx512_bf16"}  # AMD EPYC Zen 4
AVX2_CPU = {"avx2", "fma"}  # AMD EPYC Zen 2/3


def choose(use, requested="auto", flags=AVX2_CPU, environ=None, **kwargs):
    return runtime.choose_precision(use, requested, cpu_flags=flags, device="CPU", environ=environ or {}, **kwargs)


def test_a_bf16_cpu_gets_bfloat16_for_features_and_gan_float32_for_head_and_export():
    for flags, reason in ((AMX_CPU, "auto: CPU has amx_bf16+avx512_bf16"), (ZEN4_CPU, "auto: CPU has avx512_bf16")):
        assert choose("features", flags=flags) == ("mixed_bfloat16", reason, "auto")
        assert choose("gan", flags=flags).precision == "mixed_bfloat16"
        assert choose("head", flags=flags).precision == "float32"
        assert choose("export", flags=flags).precision == "float32"


def test_an_avx2_only_cpu_stays_float32():
    for use in runtime.USES:
        assert choose(use).precision == "float32"
    assert choose("features").reason == "auto: CPU lacks avx512_bf16/amx_bf16"
    assert choose("features", flags=set()).precision == "float32"  # no /proc/cpuinfo: the safe answer


def test_gpu_keeps_mixed_float16():
    choice = runtime.choose_precision("features", device="GPU", environ={})
    assert choice.precision == "mixed_float16" and "GPU" in choice.reason


def test_environment_overrides_auto_and_argument_overrides_environment():
    env = {runtime.ENV_VAR: "float32"}
    assert choose("features", flags=AMX_CPU, environ=env) == ("float32", "COVID_KERAS_PRECISION=float32", "environment")
    assert choose("gan", environ={runtime.ENV_VAR: "mixed_bfloat16"}).precision == "mixed_bfloat16"
    assert choose("features", flags=AMX_CPU, environ={runtime.ENV_VAR: "auto"}).precision == "mixed_bfloat16"
    assert choose("features", "mixed_bfloat16", environ=env, requested_by="--precision") == (
        "mixed_bfloat16", "--precision mixed_bfloat16", "argument")
    assert choose("head", environ={runtime.ENV_VAR: "mixed_bfloat16"}).precision == "float32"


def test_the_real_environment_variable_is_read(monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "mixed_bfloat16")
    assert runtime.choose_precision("features", cpu_flags=AVX2_CPU, device="CPU").precision == "mixed_bfloat16"


def test_invalid_values_name_their_source():
    with pytest.raises(ValueError, match="COVID_KERAS_PRECISION"):
        choose("features", environ={runtime.ENV_VAR: "bf16"})
    with pytest.raises(ValueError, match="--precision"):
        choose("features", "float8", requested_by="--precision")
    with pytest.raises(ValueError, match="--precision: the head is always float32"):
        choose("head", "mixed_bfloat16", requested_by="--precision")
    with pytest.raises(ValueError, match="use must be one of"):
        choose("training")


def test_cpu_flags_are_read_once(monkeypatch):
    runtime._cpuinfo.cache_clear()
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    runtime.cpu_flags(), runtime.cpu_model(), runtime.cpu_flags()
    assert opened.count("/proc/cpuinfo") <= 1
    assert isinstance(runtime.cpu_flags(), frozenset)


def test_resolve_keeps_its_contract():
    precision, jit = runtime.resolve("mixed_bfloat16", False)
    assert (precision, jit) == ("mixed_bfloat16", False)
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve("float8")
