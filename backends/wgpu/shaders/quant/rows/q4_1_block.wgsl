// Q4_1 weights as the several-rows matvec reads them (activations int8 only): a block of
// 32 is 5 words, {f16 d, f16 m} then qs[16].
@group(0) @binding(2) var<storage, read> w: array<u32>;

const W_BYTES: u32 = 4u;
