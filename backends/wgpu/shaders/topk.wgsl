// A sampled step's candidates on the device, so that the host reads k pairs, not the
// logits row: the K largest values of one row (K: k rounded up to a power of two) and
// the first value that is not finite (which the host reports as an error). Rounds of
// this kernel: in each, workgroup g takes a chunk of CHUNK entries (round 0: values of
// the row; later rounds: the previous round's candidates) into workgroup memory, finds
// its best K by a bitonic top-K (sorted runs of K, halved pairwise) and writes them in
// order to out[g·K ..]; the host repeats rounds until one workgroup remains.
// An entry is (key, id): the key orders like the value's total order (f32 total_cmp),
// a non-finite value's key is BAD, above every finite one, so the first non-finite index
// sorts first; padding is key 0, below every finite value, id NONE. Order: key
// descending, then id ascending.
// params: 0 round, 1 n (values at round 0, entries later), 2 row offset, 3 K,
// 4 groups along x, 5 last round (1: also write the first entry's value bits at out[K]).
@group(0) @binding(1) var<storage, read> row: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<u32>>;

const CHUNK: u32 = 2048u;
const THREADS: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const BAD: u32 = 0xffffffffu;

// 16 KiB: all the workgroup memory WebGPU guarantees.
var<workgroup> wkey: array<u32, 2048>;
var<workgroup> wid: array<u32, 2048>;

// The key of a value's bits: ascending keys are ascending values; NaN and ±inf are BAD.
fn key_of(bits: u32) -> u32 {
    // Exponent all ones: NaN or infinite (bit tests, which no float rule relaxes).
    if (bits & 0x7f800000u) == 0x7f800000u {
        return BAD;
    }
    return select(bits ^ 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// Whether entry a comes before entry b.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// Compare-and-swap pair t of a bitonic step (its entries `stride` apart): runs of
// `size` with bit `size` of the index clear end best first, the others worst first.
fn order(t: u32, stride: u32, size: u32) {
    let a = 2u * t - (t & (stride - 1u));
    let b = a + stride;
    let ka = wkey[a];
    let ia = wid[a];
    let kb = wkey[b];
    let ib = wid[b];
    if before(kb, ib, ka, ia) == ((a & size) == 0u) {
        wkey[a] = kb;
        wid[a] = ib;
        wkey[b] = ka;
        wid[b] = ia;
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let g = flat_group(wg, pu(4));
    let n = pu(1);
    let first = g * CHUNK;
    for (var j = li; j < CHUNK; j += THREADS) {
        var k = 0u;
        var id = NONE;
        let i = first + j;
        if i < n {
            if pu(0) == 0u {
                k = key_of(bitcast<u32>(row[pu(2) + i]));
                id = i;
            } else {
                let e = src[i];
                k = e.x;
                id = e.y;
            }
        }
        wkey[j] = k;
        wid[j] = id;
    }
    workgroupBarrier();
    let kk = pu(3);
    // Bitonic sort into runs of kk, alternately forwards (best first) and backwards.
    for (var size = 2u; size <= kk; size *= 2u) {
        for (var stride = size / 2u; stride > 0u; stride /= 2u) {
            for (var t = li; t < CHUNK / 2u; t += THREADS) {
                order(t, stride, size);
            }
            workgroupBarrier();
        }
    }
    // Halve until one run is left: the better of entry i of a forward run and entry i of
    // the backward run after it are the pair's best kk, a bitonic run, which the merge
    // steps sort (again alternately). Far less work than sorting the whole chunk.
    for (var n = CHUNK; n > kk; n /= 2u) {
        // A thread's pairs: at most CHUNK / 2 / THREADS.
        var bk: array<u32, 4>;
        var bi: array<u32, 4>;
        for (var c = 0u; c < 4u; c++) {
            let t = li + c * THREADS;
            if t < n / 2u {
                let a = 2u * (t / kk) * kk + t % kk;
                let b = a + kk;
                let first = before(wkey[a], wid[a], wkey[b], wid[b]);
                bk[c] = select(wkey[b], wkey[a], first);
                bi[c] = select(wid[b], wid[a], first);
            }
        }
        workgroupBarrier();
        for (var c = 0u; c < 4u; c++) {
            let t = li + c * THREADS;
            if t < n / 2u {
                wkey[t] = bk[c];
                wid[t] = bi[c];
            }
        }
        workgroupBarrier();
        for (var stride = kk / 2u; stride > 0u; stride /= 2u) {
            for (var t = li; t < n / 4u; t += THREADS) {
                order(t, stride, kk);
            }
            workgroupBarrier();
        }
    }
    for (var j = li; j < kk; j += THREADS) {
        out[g * kk + j] = vec2<u32>(wkey[j], wid[j]);
    }
    if pu(5) == 1u && li == 0u {
        // The value's bits, where the first entry is a non-finite one.
        var bits = 0u;
        if wkey[0] == BAD {
            bits = bitcast<u32>(row[pu(2) + wid[0]]);
        }
        out[kk] = vec2<u32>(bits, 0u);
    }
}
