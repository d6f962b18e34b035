//! Transcendental functions as cranelift IR, for one f32 or four at once: the same
//! instructions either way, so a row's vector body and its scalar tail agree.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{ConstantData, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;
use weft_ir::Ew;

/// Emits values of one type: `F32` or `F32X4`.
pub struct Math<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    pub ty: Type,
}

impl Math<'_, '_> {
    fn vector(&self) -> bool {
        self.ty.is_vector()
    }

    /// The constant `v` in every lane. A vector constant is a constant-pool entry
    /// that the instruction using it reads as its memory operand: no register held
    /// across the loop, no instruction of its own.
    pub fn c(&mut self, v: f32) -> Value {
        match self.vector() {
            true => {
                let lanes: Vec<u8> = (0..4).flat_map(|_| v.to_le_bytes()).collect();
                let h = self.b.func.dfg.constants.insert(ConstantData::from(lanes));
                self.b.ins().vconst(self.ty, h)
            }
            false => self.b.ins().f32const(v),
        }
    }

    pub fn add(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fadd(x, y)
    }

    pub fn sub(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fsub(x, y)
    }

    pub fn mul(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fmul(x, y)
    }

    pub fn div(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fdiv(x, y)
    }

    /// `x·y + z`, rounded twice (no FMA: the same result on every machine).
    fn mul_add(&mut self, x: Value, y: Value, z: Value) -> Value {
        let p = self.mul(x, y);
        self.add(p, z)
    }

    /// `x` limited to `lo..=hi`; NaN stays NaN (both comparisons are false).
    fn clamp(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let hi = self.c(hi);
        let lo = self.c(lo);
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
        let x = self.pick(above, hi, x);
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        self.pick(below, lo, x)
    }

    /// `yes` where `mask` (an `fcmp` result) holds, else `no`.
    fn pick(&mut self, mask: Value, yes: Value, no: Value) -> Value {
        match self.vector() {
            true => {
                let mask = self.b.ins().bitcast(self.ty, MemFlagsData::new(), mask);
                self.b.ins().bitselect(mask, yes, no)
            }
            false => self.b.ins().select(mask, yes, no),
        }
    }

    /// `eˣ`: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in two parts, so n·ln2 is exact),
    /// eʳ by a degree-6 polynomial (Cephes' `expf` coefficients), 2ⁿ built in the
    /// exponent bits. n is rounded by adding 1.5·2²³ (+127, the exponent bias), which
    /// leaves n + 127 in the sum's low mantissa bits: one add, where a round and a
    /// float-to-int conversion would cost a dozen instructions on vectors. Relative
    /// error about 2 ulp; NaN stays NaN. Inputs are clamped to where 2ⁿ is a normal
    /// number: below e⁻⁸⁷ gives about 1e-38 rather than a subnormal, above e⁸⁸ gives
    /// e⁸⁸ rather than up to 2.4e38 or infinity; no caller here can tell the difference.
    pub fn exp(&mut self, x: Value) -> Value {
        let x = self.clamp(x, -87.336_55, 88.0);
        let log2e = self.c(std::f32::consts::LOG2_E);
        let magic = self.c(12_582_912.0 + 127.0);
        let t = self.mul(x, log2e);
        let t = self.add(t, magic);
        let n = self.sub(t, magic);
        let c1 = self.c(0.693_359_4);
        let c2 = self.c(-2.121_944_4e-4);
        let r = self.mul(n, c1);
        let r = self.sub(x, r);
        let r2 = self.mul(n, c2);
        let r = self.sub(r, r2);
        let mut p = self.c(1.987_569_1e-4);
        for k in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            let k = self.c(k);
            p = self.mul_add(p, r, k);
        }
        let rr = self.mul(r, r);
        let y = self.mul_add(p, rr, r);
        let one = self.c(1.0);
        let y = self.add(y, one);
        let ity = self.ty.as_int();
        let bits = self.b.ins().bitcast(ity, MemFlagsData::new(), t);
        let bits = self.b.ins().ishl_imm_u(bits, 23);
        let pow2 = self.b.ins().bitcast(self.ty, MemFlagsData::new(), bits);
        self.mul(y, pow2)
    }

    /// `tanh(y)`: `1 − 2/(e^{2y} + 1)`, whose absolute error is that of one `exp`
    /// (~1e-7). With `relative`, below |y| = 0.2, where that would lose relative
    /// precision, its Taylor series to y⁹ (truncation error under 2e-10); GELU, which
    /// adds 1 to it, does without.
    pub fn tanh(&mut self, y: Value, relative: bool) -> Value {
        let two = self.c(2.0);
        let one = self.c(1.0);
        let y2 = self.mul(y, two);
        let e = self.exp(y2);
        let e1 = self.add(e, one);
        let q = self.div(two, e1);
        let big = self.sub(one, q);
        if !relative {
            return big;
        }
        let s = self.mul(y, y);
        let mut p = self.c(62.0 / 2835.0);
        for k in [-17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0] {
            let k = self.c(k);
            p = self.mul_add(p, s, k);
        }
        let ys = self.mul(y, s);
        let small = self.mul_add(p, ys, y);
        let ay = self.b.ins().fabs(y);
        let limit = self.c(0.2);
        let is_small = self.b.ins().fcmp(FloatCC::LessThan, ay, limit);
        self.pick(is_small, small, big)
    }

    /// `x · σ(x)` as `x / (1 + e⁻ˣ)`, the reference's form.
    pub fn silu(&mut self, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let e = self.exp(nx);
        let one = self.c(1.0);
        let d = self.add(one, e);
        self.div(x, d)
    }

    /// GELU, tanh approximation, the reference's form.
    pub fn gelu(&mut self, x: Value) -> Value {
        let k = self.c(0.044_715);
        let x3 = self.mul(x, x);
        let x3 = self.mul(x3, x);
        let inner = self.mul_add(k, x3, x);
        let s = self.c(0.797_884_6);
        let y = self.mul(s, inner);
        let t = self.tanh(y, false);
        let one = self.c(1.0);
        let t1 = self.add(one, t);
        let half = self.c(0.5);
        let h = self.mul(half, x);
        self.mul(h, t1)
    }

    /// `cap · tanh(x / cap)`.
    pub fn softcap(&mut self, x: Value, cap: f32) -> Value {
        let c = self.c(cap);
        let y = self.div(x, c);
        let t = self.tanh(y, true);
        self.mul(c, t)
    }

    /// Runs an elementwise program over registers that start with its inputs; the
    /// last register is the result.
    pub fn program(&mut self, inputs: &[Value], code: &[Ew]) -> Value {
        let mut regs = inputs.to_vec();
        for e in code {
            let v = match *e {
                Ew::Add { a, b } => self.add(regs[a], regs[b]),
                Ew::Mul { a, b } => self.mul(regs[a], regs[b]),
                Ew::Scale { a, factor } => {
                    let f = self.c(factor);
                    self.mul(regs[a], f)
                }
                Ew::Silu { a } => self.silu(regs[a]),
                Ew::Gelu { a } => self.gelu(regs[a]),
                Ew::Softcap { a, cap } => self.softcap(regs[a], cap),
            };
            regs.push(v);
        }
        regs[regs.len() - 1]
    }
}
