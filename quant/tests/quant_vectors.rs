//! Decoding is bit-exact against gguf-py's dequantisation
//! (fixtures made by scripts/quant_vectors/make_quant_vectors.py).

use std::path::PathBuf;
use weft_ir::DType;
use weft_quant::kernel_for;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant")
}

/// The value of `"key": value` in one line of index.json (written one entry per line).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pat.len();
    let rest = line[start..].trim_start();
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().trim_matches('"')
}

struct Entry {
    dtype: DType,
    rows: usize,
    cols: usize,
    bin: String,
    f32: String,
}

fn index() -> Vec<Entry> {
    let text = std::fs::read_to_string(fixtures().join("index.json")).expect("index.json");
    text.lines()
        .filter(|l| l.contains("\"type\""))
        .map(|l| {
            let name = field(l, "type");
            Entry {
                dtype: *DType::ALL
                    .iter()
                    .find(|d| d.name() == name)
                    .unwrap_or_else(|| panic!("unknown type {name}")),
                rows: field(l, "rows").parse().unwrap(),
                cols: field(l, "cols").parse().unwrap(),
                bin: field(l, "bin").to_string(),
                f32: field(l, "f32").to_string(),
            }
        })
        .collect()
}

#[test]
fn every_type_has_vectors() {
    let idx = index();
    for d in DType::ALL {
        assert!(
            idx.iter().any(|e| e.dtype == d),
            "no reference vectors for {d}"
        );
    }
}

#[test]
fn decode_matches_reference_bit_for_bit() {
    for e in index() {
        let bin = std::fs::read(fixtures().join(&e.bin)).unwrap();
        let want: Vec<f32> = std::fs::read(fixtures().join(&e.f32))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let rb = e.dtype.row_bytes(e.cols).unwrap();
        assert_eq!(bin.len(), e.rows * rb, "{}", e.dtype);
        assert_eq!(want.len(), e.rows * e.cols, "{}", e.dtype);
        let kern = kernel_for(e.dtype);
        let mut got = vec![0f32; e.cols];
        for r in 0..e.rows {
            kern.decode_row(&bin[r * rb..(r + 1) * rb], &mut got);
            for (c, (g, w)) in got.iter().zip(&want[r * e.cols..]).enumerate() {
                assert!(!w.is_nan(), "{} reference has NaN", e.dtype);
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{} row {r} col {c}: got {g:e}, reference {w:e}",
                    e.dtype
                );
            }
        }
    }
}
