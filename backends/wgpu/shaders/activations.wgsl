// Activation functions, as the reference kernels compute them.
fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// tanh of a clamped argument: some drivers' tanh overflows to NaN for large inputs,
// and tanh(±15) is ±1 in f32 already.
fn tanh_c(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

// GELU, tanh approximation.
fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + tanh_c(0.7978846 * (v + 0.044715 * v * v * v)));
}

// A gated unit's activation by its code: 0 silu, 1 gelu (the GLU step's parameter).
fn glu_act(v: f32, code: u32) -> f32 {
    if code == 1u {
        return gelu(v);
    }
    return silu(v);
}

fn softcap(v: f32, cap: f32) -> f32 {
    return cap * tanh_c(v / cap);
}
