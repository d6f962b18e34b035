// A decode kernel's output quantised where it was written (activations int8), so that
// the integer-dot matvec reading it needs no quantize_q8 dispatch: words v0 .. v0 + n
// (n ≤ Q8_SLOTS, whole blocks) of row 0 of `out`, k values wide, which this workgroup has
// just stored, read back and quantised a vec4 a thread into `q8` (q8_block.wgsl), the
// values the quantize_q8 kernel would write. Called in uniform control flow.
fn q8_from_out(li: u32, v0: u32, n: u32, k: u32) {
    storageBarrier();
    let inside = li < n;
    var h = vec4<f32>(0.0);
    if inside {
        let i = 4u * (v0 + li);
        h = vec4<f32>(out[i], out[i + 1u], out[i + 2u], out[i + 3u]);
    }
    if li < Q8_SLOTS {
        q8_mark(li, h);
    }
    workgroupBarrier();
    if inside {
        q8_store(li, v0 + li, h, k);
    }
}
