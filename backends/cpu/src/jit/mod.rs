//! The cpu backend's JIT. At lowering, every elementwise step (a fused program, an
//! activation, a gated unit, a bias or a residual add) and every RMS norm is compiled
//! by cranelift into native code with its widths and constants baked in: four lanes
//! at a time, `exp` and `tanh` inline rather than a libm call per value. Steps with
//! the same specification share one function. The reference backend's interpreted
//! ops are the yardstick: `tests` below compare every kernel with them on random
//! shapes and values.

mod emit;
mod math;

use cranelift_codegen::ir::{AbiParam, UserFuncName};
use cranelift_codegen::{settings, settings::Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use rayon::prelude::*;
use std::collections::HashMap;
use weft_ir::{Dim, Ew, GluAct, Op, Plan};

/// Inputs a compiled kernel takes at most: as many as the host passes.
const MAX_ARGS: usize = weft_reference::host::COMPILED_INPUTS;

/// Values per call below which a kernel runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 14;

/// A compiled kernel: input base pointers (one per host input), the output, and the
/// count of units (rows, or norm groups) to run.
type Entry = unsafe extern "C" fn(ins: *const *const f32, out: *mut f32, units: usize);

/// One input of a mapped row: host input `arg`, `stride` values apart per row (0: the
/// same vector for every row, as a bias), starting `offset` values in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operand {
    pub arg: usize,
    pub stride: usize,
    pub offset: usize,
}

/// What a kernel computes, the widths baked in.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// `out[r, c] = program(operands at [r, c])` over rows of `width`.
    Map {
        width: usize,
        operands: Vec<Operand>,
        code: Vec<Ew>,
    },
    /// Each group of `group` values of input 0 becomes `x / rms(x) · (w + offset)`
    /// (w: input 1 where `weighted`, else 1); with `add`, inputs 0 and 1 are summed
    /// first, the sum goes to the first `group` output columns and its norm to the
    /// next `group` (w is then input 2).
    Norm {
        group: usize,
        eps: f32,
        offset: f32,
        weighted: bool,
        add: bool,
    },
}

impl Spec {
    /// The specification of step `i`, where the JIT has a kernel for its op and its
    /// widths are fixed; `None` leaves the step to the interpreter.
    pub fn of(plan: &Plan, i: usize) -> Option<Spec> {
        let st = &plan.steps[i];
        let width = match st.node.shape.get(1)? {
            Dim::Known(w) if *w > 0 => *w,
            _ => return None,
        };
        let rows = |n: usize| -> Vec<Operand> {
            (0..n)
                .map(|arg| Operand {
                    arg,
                    stride: width,
                    offset: 0,
                })
                .collect()
        };
        let map = |operands, code| Spec::Map {
            width,
            operands,
            code,
        };
        let n_in = st.inputs.len();
        let spec = match (&st.node.op, n_in) {
            (Op::Add, 2) => map(rows(2), vec![Ew::Add { a: 0, b: 1 }]),
            (Op::Mul, 2) => map(rows(2), vec![Ew::Mul { a: 0, b: 1 }]),
            (Op::Scale { factor }, 1) => map(
                rows(1),
                vec![Ew::Scale {
                    a: 0,
                    factor: *factor,
                }],
            ),
            (Op::Silu, 1) => map(rows(1), vec![Ew::Silu { a: 0 }]),
            (Op::Gelu, 1) => map(rows(1), vec![Ew::Gelu { a: 0 }]),
            (Op::Softcap { cap }, 1) => map(rows(1), vec![Ew::Softcap { a: 0, cap: *cap }]),
            (Op::Bias, 2) => {
                let bias = Operand {
                    arg: 1,
                    stride: 0,
                    offset: 0,
                };
                map(vec![rows(1)[0], bias], vec![Ew::Add { a: 0, b: 1 }])
            }
            (Op::Elementwise { code }, n) => map(rows(n), code.clone()),
            (Op::Glu { act }, 1) => Spec::glu(width, *act),
            (
                Op::RmsNorm {
                    eps,
                    weight_offset,
                    group,
                },
                1 | 2,
            ) if *group > 0 && width.is_multiple_of(*group) => Spec::Norm {
                group: *group,
                eps: *eps,
                offset: *weight_offset,
                weighted: n_in == 2,
                add: false,
            },
            (
                Op::AddRmsNorm {
                    eps,
                    weight_offset,
                    group,
                },
                3,
            ) if width.is_multiple_of(2) && *group == width / 2 => Spec::Norm {
                group: *group,
                eps: *eps,
                offset: *weight_offset,
                weighted: true,
                add: true,
            },
            _ => return None,
        };
        spec.valid().then_some(spec)
    }

    /// Whether [`emit`] can compile this spec and [`Jit::run`]'s checks cover what its
    /// code reads: operands among the inputs the host passes, registers defined
    /// before use, a width, and byte sizes that fit the code's 64-bit arithmetic.
    fn valid(&self) -> bool {
        let bytes = |n: usize| n.checked_mul(8).is_some_and(|b| b < i64::MAX as usize);
        match self {
            Spec::Map {
                width,
                operands,
                code,
            } => {
                let n = operands.len();
                *width > 0
                    && !code.is_empty()
                    && operands.iter().all(|o| {
                        o.arg < MAX_ARGS
                            && bytes(o.stride)
                            && o.offset.checked_add(*width).is_some_and(bytes)
                    })
                    && code
                        .iter()
                        .enumerate()
                        .all(|(k, e)| e.operands().iter().all(|&a| a < n + k))
            }
            Spec::Norm { group, .. } => *group > 0 && group.checked_mul(2).is_some_and(bytes),
        }
    }

    /// A gated linear unit over rows of `[gate | up]`: `act(gate) · up`, `width` wide.
    pub fn glu(width: usize, act: GluAct) -> Spec {
        let half = |offset| Operand {
            arg: 0,
            stride: 2 * width,
            offset,
        };
        let act = match act {
            GluAct::Silu => Ew::Silu { a: 0 },
            GluAct::Gelu => Ew::Gelu { a: 0 },
        };
        Spec::Map {
            width,
            operands: vec![half(0), half(width)],
            code: vec![act, Ew::Mul { a: 2, b: 1 }],
        }
    }

    /// Output values per unit.
    fn out_width(&self) -> usize {
        match self {
            Spec::Map { width, .. } => *width,
            Spec::Norm { group, add, .. } => group * if *add { 2 } else { 1 },
        }
    }

    /// What each host input must hold, as (values a unit apart, values the last unit
    /// reads from its start): `units` units read `(units − 1) · apart + last` values.
    /// Checked before every call.
    fn needs(&self) -> Vec<(usize, usize)> {
        match self {
            Spec::Map {
                width, operands, ..
            } => {
                let n = operands.iter().map(|o| o.arg + 1).max().unwrap_or(0);
                let mut needs = vec![(0, 0); n];
                for o in operands {
                    let need = &mut needs[o.arg];
                    need.0 = need.0.max(o.stride);
                    need.1 = need.1.max(o.offset + width);
                }
                needs
            }
            Spec::Norm {
                group,
                weighted,
                add,
                ..
            } => {
                let mut needs = vec![(*group, *group)];
                if *add {
                    needs.push((*group, *group));
                }
                if *weighted {
                    needs.push((0, *group));
                }
                needs
            }
        }
    }
}

/// A step's compiled kernel and what it reads.
struct Kernel {
    entry: Entry,
    out_width: usize,
    needs: Vec<(usize, usize)>,
}

/// The JIT's code pages. Written once, before any kernel is handed out, then only
/// executed: sharing them between threads is sound.
struct Code(Option<JITModule>);

unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the kernels pointing into it die with the `Jit` that owns both.
            unsafe { module.free_memory() };
        }
    }
}

/// The kernels compiled for one plan, by step.
pub struct Jit {
    steps: Vec<Option<Kernel>>,
    functions: usize,
    _code: Code,
}

impl Jit {
    /// Compiles every step of `plan` that [`Spec::of`] covers.
    pub fn for_plan(plan: &Plan) -> Result<Jit, String> {
        Jit::compile((0..plan.steps.len()).map(|i| Spec::of(plan, i)))
    }

    /// Compiles a kernel for each `Some` spec, by step. A step that cranelift cannot
    /// compile on this machine (an instruction it lacks) stays interpreted; an ISA
    /// cranelift does not know is an error, which leaves every step interpreted.
    pub fn compile(specs: impl IntoIterator<Item = Option<Spec>>) -> Result<Jit, String> {
        let mut flags = settings::builder();
        flags.set("opt_level", "none").map_err(|e| e.to_string())?;
        let isa = cranelift_native::builder()?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let ptr = module.target_config().pointer_type();
        let mut sig = module.make_signature();
        sig.params.extend([AbiParam::new(ptr); 3]);

        let mut by_spec: HashMap<String, Option<cranelift_module::FuncId>> = HashMap::new();
        let mut chosen = Vec::new();
        for spec in specs {
            let Some(spec) = spec.filter(Spec::valid) else {
                chosen.push(None);
                continue;
            };
            let key = format!("{spec:?}");
            let id = match by_spec.get(&key) {
                Some(id) => *id,
                None => {
                    let n = by_spec.len();
                    let id = module
                        .declare_function(&format!("weft_kernel_{n}"), Linkage::Local, &sig)
                        .map_err(|e| e.to_string())?;
                    ctx.func.signature = sig.clone();
                    ctx.func.name = UserFuncName::user(0, id.as_u32());
                    emit::function(&mut ctx.func, &mut fctx, &spec, module.target_config());
                    let ok = module.define_function(id, &mut ctx).is_ok();
                    module.clear_context(&mut ctx);
                    let id = ok.then_some(id);
                    by_spec.insert(key, id);
                    id
                }
            };
            chosen.push(id.map(|id| (id, spec)));
        }
        module.finalize_definitions().map_err(|e| e.to_string())?;
        let steps = chosen
            .into_iter()
            .map(|c| {
                c.map(|(id, spec)| Kernel {
                    // SAFETY: defined with `Entry`'s signature (three pointer-sized
                    // arguments, the platform's C convention) and finalized above.
                    entry: unsafe {
                        std::mem::transmute::<*const u8, Entry>(module.get_finalized_function(id))
                    },
                    out_width: spec.out_width(),
                    needs: spec.needs(),
                })
            })
            .collect();
        let functions = by_spec.values().filter(|id| id.is_some()).count();
        Ok(Jit {
            steps,
            functions,
            _code: Code(Some(module)),
        })
    }

    /// Steps with a kernel, and the distinct functions they share.
    pub fn counts(&self) -> (usize, usize) {
        (self.steps.iter().flatten().count(), self.functions)
    }

    /// Runs step `step`'s kernel over `ins` into `out`; false where it has none, or
    /// where the buffers are not what it was compiled for (the interpreter then runs
    /// the step and reports what is wrong).
    pub fn run(&self, step: usize, ins: &[&[f32]], out: &mut [f32]) -> bool {
        let Some(Some(k)) = self.steps.get(step) else {
            return false;
        };
        if !out.len().is_multiple_of(k.out_width) || k.needs.len() > ins.len() {
            return false;
        }
        let units = out.len() / k.out_width;
        if units == 0 {
            return true;
        }
        let fits = k.needs.iter().zip(ins).all(|(&(apart, last), x)| {
            (units - 1)
                .checked_mul(apart)
                .and_then(|n| n.checked_add(last))
                .is_some_and(|n| x.len() >= n)
        });
        if !fits {
            return false;
        }
        let call = |start: usize, out: &mut [f32]| {
            let mut ptrs = [std::ptr::null::<f32>(); MAX_ARGS];
            for (p, (&(apart, _), x)) in ptrs.iter_mut().zip(k.needs.iter().zip(ins)) {
                *p = x[start * apart..].as_ptr();
            }
            // SAFETY: every input holds the values its units read from `start` on
            // (checked above) and `out` holds exactly its units' outputs.
            unsafe { (k.entry)(ptrs.as_ptr(), out.as_mut_ptr(), out.len() / k.out_width) }
        };
        let per_task = (PARALLEL_MIN / k.out_width).max(1);
        if units <= per_task {
            call(0, out);
        } else {
            out.par_chunks_mut(per_task * k.out_width)
                .enumerate()
                .for_each(|(t, o)| call(t * per_task, o));
        }
        true
    }
}

#[cfg(test)]
mod tests;
