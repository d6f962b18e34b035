// Element d of a head after rope: its pair partner and (cos, sin) from the table `cs`
// (bound by the kernel) at position p. Layout `lay` 0: pairs (2i, 2i+1); 1: halves.
// Dims past the rotated ones pass through.
fn roped(x0: f32, partner: f32, d: u32, half: u32, lay: u32, p: u32) -> f32 {
    var i: u32;
    var first: bool;
    if lay == 0u {
        if d >= 2u * half {
            return x0;
        }
        i = d / 2u;
        first = d % 2u == 0u;
    } else {
        if d >= 2u * half {
            return x0;
        }
        first = d < half;
        i = select(d - half, d, first);
    }
    let r = cs[p * half + i];
    if first {
        return x0 * r.x - partner * r.y;
    }
    return partner * r.y + x0 * r.x;
}

// The dim paired with d (itself where d is not rotated).
fn partner_of(d: u32, half: u32, lay: u32) -> u32 {
    if d >= 2u * half {
        return d;
    }
    if lay == 0u {
        return d ^ 1u;
    }
    return select(d - half, d + half, d < half);
}
