// A greedy step's pick on the device, so that the host reads 16 bytes, not the logits
// row: the largest value of one row (the first on ties) and the first value that is not
// finite (which the host reports as an error). Two dispatches of this kernel: stage 0,
// workgroup g reduces its share of the row into partial g; stage 1, one workgroup
// reduces the partials into partial n (just past them).
// A partial is 4 words: the best value's bits, its index (NONE: none yet), the first
// non-finite index (NONE: none) and that value's bits.
// params: 0 stage, 1 n (values at stage 0, partials at stage 1), 2 row offset, 3 groups.
@group(0) @binding(1) var<storage, read> row: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<u32>;

const NONE: u32 = 0xffffffffu;

struct Best {
    value: f32,
    index: u32,
    bad: u32,
    bad_bits: u32,
}

var<workgroup> wbest: array<Best, 256>;

// a and b combined: the larger value (the lower index on ties), the lower non-finite index.
fn better(a: Best, b: Best) -> Best {
    var r = a;
    if b.index != NONE && (a.index == NONE || b.value > a.value || (b.value == a.value && b.index < a.index)) {
        r.value = b.value;
        r.index = b.index;
    }
    if b.bad < a.bad {
        r.bad = b.bad;
        r.bad_bits = b.bad_bits;
    }
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = pu(1);
    var best = Best(0.0, NONE, NONE, 0u);
    if pu(0) == 0u {
        // Each thread's indices rise, so its first pick and first non-finite are its lowest.
        for (var i = wg.x * 256u + li; i < n; i += pu(3) * 256u) {
            let bits = bitcast<u32>(row[pu(2) + i]);
            // Exponent all ones: NaN or infinite (bit tests, which no float rule relaxes).
            if (bits & 0x7f800000u) == 0x7f800000u {
                if best.bad == NONE {
                    best.bad = i;
                    best.bad_bits = bits;
                }
            } else {
                best = better(best, Best(bitcast<f32>(bits), i, NONE, 0u));
            }
        }
    } else {
        for (var j = li; j < n; j += 256u) {
            let o = 4u * j;
            best = better(best, Best(bitcast<f32>(part[o]), part[o + 1u], part[o + 2u], part[o + 3u]));
        }
    }
    wbest[li] = best;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h = h / 2u) {
        if li < h {
            wbest[li] = better(wbest[li], wbest[li + h]);
        }
        workgroupBarrier();
    }
    if li == 0u {
        let b = wbest[0];
        let o = 4u * select(wg.x, n, pu(0) == 1u);
        part[o] = bitcast<u32>(b.value);
        part[o + 1u] = b.index;
        part[o + 2u] = b.bad;
        part[o + 3u] = b.bad_bits;
    }
}
