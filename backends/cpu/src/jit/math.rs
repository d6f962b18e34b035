//! Transcendental functions as cranelift IR, for one f32 or four at once: the same
//! instructions either way, so a row's vector body and its scalar tail agree.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
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

    /// The constant `v` in every lane.
    pub fn c(&mut self, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        match self.vector() {
            true => self.b.ins().splat(self.ty, s),
            false => s,
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

    /// `eˣ`: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in two parts, so n·ln2 is exact),
    /// eʳ by a degree-6 polynomial (Cephes' `expf` coefficients), 2ⁿ built in the
    /// exponent bits. Relative error about 2 ulp; NaN stays NaN. Inputs are clamped to
    /// where 2ⁿ is a normal number: below e⁻⁸⁷ gives about 1e-38 rather than a
    /// subnormal, which no caller here can tell from 0.
    pub fn exp(&mut self, x: Value) -> Value {
        let hi = self.c(88.376_26);
        let lo = self.c(-87.336_55);
        let x = self.b.ins().fmin(x, hi);
        let x = self.b.ins().fmax(x, lo);
        let log2e = self.c(std::f32::consts::LOG2_E);
        let t = self.mul(x, log2e);
        let n = self.b.ins().nearest(t);
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
        let ity = match self.vector() {
            true => types::I32X4,
            false => types::I32,
        };
        let i = self.b.ins().fcvt_to_sint_sat(ity, n);
        let bias = self.b.ins().iconst(types::I32, 127);
        let bias = match self.vector() {
            true => self.b.ins().splat(ity, bias),
            false => bias,
        };
        let i = self.b.ins().iadd(i, bias);
        let i = self.b.ins().ishl_imm_u(i, 23);
        let pow2 = self.b.ins().bitcast(self.ty, MemFlagsData::new(), i);
        self.mul(y, pow2)
    }

    /// `tanh(y)`: `1 − 2/(e^{2y} + 1)` (its absolute error is that of one `exp`, ~1e-7),
    /// and below |y| = 0.2, where that would lose relative precision, its Taylor
    /// series to y⁹ (truncation error under 2e-10).
    pub fn tanh(&mut self, y: Value) -> Value {
        let two = self.c(2.0);
        let one = self.c(1.0);
        let y2 = self.mul(y, two);
        let e = self.exp(y2);
        let e1 = self.add(e, one);
        let q = self.div(two, e1);
        let big = self.sub(one, q);
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
        match self.vector() {
            true => {
                let mask = self.b.ins().bitcast(self.ty, MemFlagsData::new(), is_small);
                self.b.ins().bitselect(mask, small, big)
            }
            false => self.b.ins().select(is_small, small, big),
        }
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
        let t = self.tanh(y);
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
        let t = self.tanh(y);
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
