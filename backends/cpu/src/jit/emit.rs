//! Cranelift IR for one kernel: a loop over units (rows or norm groups), each a
//! vector body four values at a time and a scalar tail for the rest of the width.

use super::math::Math;
use super::{Operand, Spec};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Function, InstBuilder, MemFlagsData, Type, Value};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use weft_ir::Ew;

const LANES: usize = 4;
/// Vectors per loop iteration.
const UNROLL: usize = 4;

/// Emits `spec`'s kernel into `func` (its signature already set).
pub fn function(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    spec: &Spec,
    config: TargetFrontendConfig,
) {
    let ptr = config.pointer_type();
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let [ins, out, units] = b.block_params(entry)[..] else {
        unreachable!("the kernel signature has three parameters")
    };
    let mut e = Emit { b, ptr };
    match spec {
        Spec::Map {
            width,
            operands,
            code,
        } => e.map(ins, out, units, *width, operands, code),
        &Spec::Norm {
            group,
            eps,
            offset,
            weighted,
            add,
        } => e.norm(ins, out, units, group, eps, offset, weighted, add),
    }
    e.b.ins().return_(&[]);
    e.b.seal_all_blocks();
    e.b.finalize(config);
}

fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

struct Emit<'a> {
    b: FunctionBuilder<'a>,
    ptr: Type,
}

impl<'f> Emit<'f> {
    fn math(&mut self, ty: Type) -> Math<'_, 'f> {
        Math { b: &mut self.b, ty }
    }

    /// `for i in 0..n { body(i) }`.
    fn each(&mut self, n: Value, mut body: impl FnMut(&mut Self, Value)) {
        let i = self.b.declare_var(self.ptr);
        let zero = self.b.ins().iconst(self.ptr, 0);
        self.b.def_var(i, zero);
        let head = self.b.create_block();
        let step = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, iv, n);
        self.b.ins().brif(more, step, &[], exit, &[]);
        self.b.switch_to_block(step);
        body(self, iv);
        let next = self.b.ins().iadd_imm_u(iv, 1);
        self.b.def_var(i, next);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
    }

    /// `body(byte offset, lane)` for every whole vector of a row: `UNROLL` vectors
    /// an iteration (lanes 0..UNROLL, independent work for the out-of-order core),
    /// then the vectors left over, unrolled.
    fn each_vector(&mut self, width: usize, mut body: impl FnMut(&mut Self, Value, usize)) {
        let n = width / LANES;
        let bytes = (LANES * 4) as i64;
        if n >= UNROLL {
            let groups = self.b.ins().iconst(self.ptr, (n / UNROLL) as i64);
            self.each(groups, |e, g| {
                let at = e.b.ins().imul_imm_u(g, UNROLL as i64 * bytes);
                for u in 0..UNROLL {
                    let at = e.b.ins().iadd_imm_u(at, u as i64 * bytes);
                    body(e, at, u);
                }
            });
        }
        for v in n / UNROLL * UNROLL..n {
            let at = self.b.ins().iconst(self.ptr, v as i64 * bytes);
            body(self, at, v % UNROLL);
        }
    }

    /// Input `k`'s base pointer.
    fn arg(&mut self, ins: Value, k: usize) -> Value {
        let flags = MemFlagsData::trusted();
        self.b.ins().load(self.ptr, flags, ins, (k * 8) as i32)
    }

    /// `base + unit · stride` values.
    fn at(&mut self, base: Value, unit: Value, stride: usize, offset: usize) -> Value {
        let by = self.b.ins().imul_imm_u(unit, (stride * 4) as i64);
        let p = self.b.ins().iadd(base, by);
        self.b.ins().iadd_imm_u(p, (offset * 4) as i64)
    }

    fn load(&mut self, ty: Type, p: Value, at: Value) -> Value {
        let a = self.b.ins().iadd(p, at);
        self.b.ins().load(ty, mem(), a, 0)
    }

    fn store(&mut self, v: Value, p: Value, at: Value) {
        let a = self.b.ins().iadd(p, at);
        self.b.ins().store(mem(), v, a, 0);
    }

    /// The scalar columns past the last whole vector, as byte offsets.
    fn tail(&mut self, width: usize) -> Vec<Value> {
        (width / LANES * LANES..width)
            .map(|c| self.b.ins().iconst(self.ptr, (c * 4) as i64))
            .collect()
    }

    fn map(
        &mut self,
        ins: Value,
        out: Value,
        units: Value,
        width: usize,
        operands: &[Operand],
        code: &[Ew],
    ) {
        let n_args = operands.iter().map(|o| o.arg + 1).max().unwrap_or(0);
        let bases: Vec<Value> = (0..n_args).map(|k| self.arg(ins, k)).collect();
        self.each(units, |e, r| {
            let rows: Vec<Value> = operands
                .iter()
                .map(|o| e.at(bases[o.arg], r, o.stride, o.offset))
                .collect();
            let out_row = e.at(out, r, width, 0);
            let one = |e: &mut Self, ty: Type, at: Value| {
                let xs: Vec<Value> = rows.iter().map(|&p| e.load(ty, p, at)).collect();
                let y = e.math(ty).program(&xs, code);
                e.store(y, out_row, at);
            };
            e.each_vector(width, |e, at, _| one(e, types::F32X4, at));
            for at in e.tail(width) {
                one(e, types::F32, at);
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn norm(
        &mut self,
        ins: Value,
        out: Value,
        units: Value,
        group: usize,
        eps: f32,
        offset: f32,
        weighted: bool,
        add: bool,
    ) {
        let x = self.arg(ins, 0);
        let y = add.then(|| self.arg(ins, 1));
        let w = weighted.then(|| self.arg(ins, if add { 2 } else { 1 }));
        let out_width = if add { 2 * group } else { group };
        self.each(units, |e, r| {
            let xr = e.at(x, r, group, 0);
            let yr = y.map(|y| e.at(y, r, group, 0));
            let or = e.at(out, r, out_width, 0);
            // Pass 1: the values (a + b, stored as the sum half, with `add`) and Σ x².
            let value = |e: &mut Self, ty: Type, at: Value| {
                let v = e.load(ty, xr, at);
                match yr {
                    Some(yr) => {
                        let u = e.load(ty, yr, at);
                        let s = e.b.ins().fadd(v, u);
                        e.store(s, or, at);
                        s
                    }
                    None => v,
                }
            };
            // One accumulator per unrolled lane, so the adds do not wait on each other.
            let zero = e.math(types::F32X4).c(0.0);
            let acc: Vec<_> = (0..UNROLL)
                .map(|_| {
                    let v = e.b.declare_var(types::F32X4);
                    e.b.def_var(v, zero);
                    v
                })
                .collect();
            e.each_vector(group, |e, at, u| {
                let v = value(e, types::F32X4, at);
                let sq = e.b.ins().fmul(v, v);
                let a = e.b.use_var(acc[u]);
                let a = e.b.ins().fadd(a, sq);
                e.b.def_var(acc[u], a);
            });
            let sums: Vec<Value> = acc.iter().map(|&v| e.b.use_var(v)).collect();
            let lo = e.b.ins().fadd(sums[0], sums[1]);
            let hi = e.b.ins().fadd(sums[2], sums[3]);
            let a = e.b.ins().fadd(lo, hi);
            let lane: Vec<Value> = (0..4u8).map(|l| e.b.ins().extractlane(a, l)).collect();
            let lo = e.b.ins().fadd(lane[0], lane[1]);
            let hi = e.b.ins().fadd(lane[2], lane[3]);
            let mut sum = e.b.ins().fadd(lo, hi);
            for at in e.tail(group) {
                let v = value(e, types::F32, at);
                let sq = e.b.ins().fmul(v, v);
                sum = e.b.ins().fadd(sum, sq);
            }
            // r = 1 / sqrt(Σx²/n + eps), as the reference computes it.
            let mut m = e.math(types::F32);
            let n = m.c(group as f32);
            let ms = m.div(sum, n);
            let epsv = m.c(eps);
            let ms = m.add(ms, epsv);
            let root = m.b.ins().sqrt(ms);
            let one = m.c(1.0);
            let scale = m.div(one, root);
            // Pass 2: x · r · (w + offset), from the sum half with `add`.
            let (src, dst) = match add {
                true => (or, e.b.ins().iadd_imm_u(or, (group * 4) as i64)),
                false => (xr, or),
            };
            let scaled = |e: &mut Self, ty: Type, at: Value| {
                let v = e.load(ty, src, at);
                let mut m = e.math(ty);
                let rv = match ty.is_vector() {
                    true => m.b.ins().splat(ty, scale),
                    false => scale,
                };
                let mut o = m.mul(v, rv);
                if let Some(w) = w {
                    let wv = e.load(ty, w, at);
                    let mut m = e.math(ty);
                    let off = m.c(offset);
                    let wo = m.add(wv, off);
                    o = m.mul(o, wo);
                }
                e.store(o, dst, at);
            };
            e.each_vector(group, |e, at, _| scaled(e, types::F32X4, at));
            for at in e.tail(group) {
                scaled(e, types::F32, at);
            }
        });
    }
}
