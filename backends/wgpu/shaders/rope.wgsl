// Rotary embedding in place over rows row0..row0+rows of x, at positions pos0 + t.
// cs holds (cos, sin) of position·frequency for every position and frequency, made on
// the host exactly as the reference computes them. One thread a (row, head, pair).
// params: 0 rows, 1 width, 2 head_dim, 3 half, 4 layout (0 pairs, 1 halves), 5 pos0,
// 6 row0, 7 groups_x.
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let idx = flat_group(wg, pu(7)) * 256u + li;
    let width = pu(1);
    let hd = pu(2);
    let half = pu(3);
    let heads = width / hd;
    if idx >= pu(0) * heads * half {
        return;
    }
    let t = idx / (heads * half);
    let h = (idx / half) % heads;
    let i = idx % half;
    var a = 2u * i;
    var b = 2u * i + 1u;
    if pu(4) == 1u {
        a = i;
        b = i + half;
    }
    let base = (pu(6) + t) * width + h * hd;
    let r = cs[(pu(5) + t) * half + i];
    let x0 = x[base + a];
    let x1 = x[base + b];
    x[base + a] = x0 * r.x - x1 * r.y;
    x[base + b] = x0 * r.y + x1 * r.x;
}
