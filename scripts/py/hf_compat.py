"""Helpers shared by the PyTorch reference scripts (scripts/hf_reference.py, scripts/py/*.py)."""


def rope_kwargs(kw):
    """transformers 5 takes RoPE settings as rope_parameters; 4.x as rope_theta + rope_scaling."""
    import transformers
    if int(transformers.__version__.split(".")[0]) < 5 or "rope_theta" not in kw:
        return kw
    kw = dict(kw)
    params = {"rope_type": "default", "rope_theta": kw.pop("rope_theta")}
    params.update(kw.pop("rope_scaling", None) or {})
    if "partial_rotary_factor" in kw:  # GLM: transformers 5 reads it from rope_parameters
        params["partial_rotary_factor"] = kw["partial_rotary_factor"]
    kw["rope_parameters"] = params
    return kw
