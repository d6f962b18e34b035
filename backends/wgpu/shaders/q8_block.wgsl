// A row quantised to 8 bits per 32 values (activations int8), as the CPU's Q8 rows:
// d = max|x| / 127, q = round(x / d) in −127..=127, into `q8` (which the kernel declares):
// words 8b..8b + 8 hold block b's packed values, word k/4 + b its scale (f32 bits). A
// block holding a NaN gets a NaN scale, so the NaN reaches the matvec's output.
// An invocation quantises one vec4 (word v of the row) in two calls with a barrier
// between: `q8_mark` puts its vec4's max|x| in slot s of the workgroup, `q8_store` reads
// the 8 slots of its block's vec4s (slots s − s % 8 … + 8, so s ≡ v mod 8, and a block's
// eight vec4s are held in one workgroup) and writes its word. No invocation loops over a
// block: a decode row is latency-bound.
const Q8_SLOTS: u32 = 64u;
var<workgroup> q8_max: array<f32, Q8_SLOTS>;

fn q8_mark(s: u32, h: vec4<f32>) {
    let a = abs(h);
    // −1 marks a NaN (every max|x| is ≥ 0).
    q8_max[s] = select(max(max(a.x, a.y), max(a.z, a.w)), -1.0, any(h != h));
}

fn q8_store(s: u32, v: u32, h: vec4<f32>, k: u32) {
    let s0 = s - s % 8u;
    var amax = 0.0;
    var nan = false;
    for (var j = 0u; j < 8u; j++) {
        let m = q8_max[s0 + j];
        amax = max(amax, m);
        nan = nan || m < 0.0;
    }
    let id = select(0.0, 127.0 / amax, amax > 0.0);
    let q = clamp(round(h * id), vec4<f32>(-127.0), vec4<f32>(127.0));
    q8[v] = pack4xI8(vec4<i32>(q));
    if v % 8u == 0u {
        q8[k / 4u + v / 8u] = select(bitcast<u32>(amax / 127.0), 0x7fc00000u, nan);
    }
}
