// Norm prologue of the one-row matvec (matvec.wgsl; replaces xdot_vec4.wgsl's x binding,
// so that x is this workgroup's copy in workgroup memory): x is the normed half of an
// add_rms_norm that only this matvec reads, worked out from the norm's inputs by every
// workgroup, so that the norm needs no dispatch of its own at decode. Each workgroup
// reads the row a + b (k wide), its mean square, and the norm's weight, all loads at
// once; workgroup (0, 0) also stores the norm's sum half, which later steps read. The
// arithmetic is add_rms_norm.wgsl's.
// params 14 a offset, 15 b offset (in vec4s), 16 eps, 17 weight offset.
@group(0) @binding(1) var<storage, read> na: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> nb: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> nsum: array<vec4<f32>>;

// Vec4s of the row a thread holds (lowering sets it to k / 4 / 64, rounded up).
const KEEP: u32 = 1u;
var<workgroup> x: array<vec4<f32>, KEEP * 64u>;

fn x_prologue(li: u32, wg: vec3<u32>) {
    let d4 = pu(1) / 4u;
    let ao = pu(14);
    let bo = pu(15);
    var v: array<vec4<f32>, KEEP>;
    var w: array<vec4<f32>, KEEP>;
    var s = 0.0;
    for (var u = 0u; u < KEEP; u++) {
        let i = li + 64u * u;
        if i < d4 {
            v[u] = na[ao + i] + nb[bo + i];
            w[u] = nw[i];
        }
    }
    let first = wg.x == 0u && wg.y == 0u;
    for (var u = 0u; u < KEEP; u++) {
        let i = li + 64u * u;
        if i < d4 {
            s += dot(v[u], v[u]);
            if first {
                nsum[i] = v[u];
            }
        }
    }
    // The 64 threads' sums, added by every thread in the same order.
    partial[li] = s;
    workgroupBarrier();
    var t = 0.0;
    for (var j = 0u; j < 64u; j++) {
        t += partial[j];
    }
    let inv = 1.0 / sqrt(t / f32(pu(1)) + pf(16));
    for (var u = 0u; u < KEEP; u++) {
        let i = li + 64u * u;
        if i < d4 {
            x[i] = v[u] * inv * (w[u] + pf(17));
        }
    }
    // x complete, and every read of partial done before the matvec writes it.
    workgroupBarrier();
}
