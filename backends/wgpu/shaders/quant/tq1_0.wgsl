// TQ1_0: super-blocks of 256 as {u8 qs[48]; u8 qh[4]; f16 d} (54 bytes) of trits.
// A byte holds its trits as a base-3 fraction: trit p is ((byte·3^p mod 256)·3) >> 8.
// qs[0..32] hold elements 32p + l (p < 5), qs[32..48] elements 160 + 16p + l (p < 5),
// qh elements 240 + 4p + l (p < 4). x = d·(trit − 1).
const TQ1_POW3 = array<u32, 5>(1u, 3u, 9u, 27u, 81u);

fn tq1_value(d: f32, byte: u32, p: u32) -> f32 {
    let pow3 = TQ1_POW3;
    let x = (byte * pow3[p]) & 0xffu;
    return d * f32(i32((x * 3u) >> 8u) - 1);
}

fn decode_chunk(row: u32, c: u32, k: u32) -> array<f32, 32> {
    let b = row + (c / 8u) * 54u;
    let j = c % 8u;
    let d = wf16(b + 52u);
    var v: array<f32, 32>;
    if j < 5u {
        // Elements 32j..32j + 32: trit j of qs[0..32].
        for (var i = 0u; i < 8u; i++) {
            let q4 = wu32(b + 4u * i);
            for (var t = 0u; t < 4u; t++) {
                v[4u * i + t] = tq1_value(d, (q4 >> (8u * t)) & 0xffu, j);
            }
        }
    } else if j < 7u {
        // Elements 160 + 32(j − 5)..: trits 2(j − 5) and 2(j − 5) + 1 of qs[32..48].
        let p = 2u * (j - 5u);
        for (var i = 0u; i < 4u; i++) {
            let q4 = wu32(b + 32u + 4u * i);
            for (var t = 0u; t < 4u; t++) {
                let byte = (q4 >> (8u * t)) & 0xffu;
                v[4u * i + t] = tq1_value(d, byte, p);
                v[4u * i + t + 16u] = tq1_value(d, byte, p + 1u);
            }
        }
    } else {
        // Elements 224..240: trit 4 of qs[32..48]; 240..256: trits 0..4 of qh.
        for (var i = 0u; i < 4u; i++) {
            let q4 = wu32(b + 32u + 4u * i);
            for (var t = 0u; t < 4u; t++) {
                v[4u * i + t] = tq1_value(d, (q4 >> (8u * t)) & 0xffu, 4u);
            }
        }
        let h4 = wu32(b + 48u);
        for (var t = 0u; t < 4u; t++) {
            let byte = (h4 >> (8u * t)) & 0xffu;
            for (var p = 0u; p < 4u; p++) {
                v[16u + 4u * p + t] = tq1_value(d, byte, p);
            }
        }
    }
    return v;
}
