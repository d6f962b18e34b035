//! The small expression language of templates: numbers, 'strings', hyperparameter
//! names (a name may hold a list: `layer_types[i]`), `+ - * / %`, comparisons,
//! `and`/`or`/`not`, and the functions `sqrt`, `min`, `max`, `len`, and
//! `if(cond, a, b)`, which evaluates only the branch it takes.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    pub fn truthy(&self) -> bool {
        match self {
            Value::Num(n) => *n != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "'{s}'"),
            Value::List(l) => write!(
                f,
                "[{}]",
                l.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'.'
                    || ((b[i] == b'-' || b[i] == b'+') && (b[i - 1] == b'e' || b[i - 1] == b'E')))
            {
                i += 1;
            }
            let s = &src[start..i];
            out.push(Tok::Num(
                s.parse().map_err(|_| format!("bad number {s:?}"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_string()));
        } else if c == '\'' {
            let end = src[i + 1..].find('\'').ok_or("unterminated string")? + i + 1;
            out.push(Tok::Str(src[i + 1..end].to_string()));
            i = end + 1;
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            if let Some(s) = ["==", "!=", "<=", ">="].into_iter().find(|s| *s == two) {
                out.push(Tok::Sym(s));
                i += 2;
            } else {
                let s = ["+", "-", "*", "/", "%", "(", ")", ",", "<", ">", "[", "]"]
                    .into_iter()
                    .find(|s| s.as_bytes()[0] == b[i])
                    .ok_or_else(|| format!("unexpected character {c:?}"))?;
                out.push(Tok::Sym(s));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A parsed expression.
#[derive(Clone, Debug)]
enum Expr {
    Lit(Value),
    Name(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

/// Tokens an expression may have. Parsing and evaluation recurse once per nesting
/// level; a bound keeps a crafted `((((…))))` from overflowing the stack (templates'
/// expressions have a few dozen).
const MAX_TOKENS: usize = 512;

/// Evaluates `src` with `vars` in scope.
pub fn eval(src: &str, vars: &BTreeMap<String, Value>) -> Result<Value, String> {
    let toks = lex(src)?;
    if toks.len() > MAX_TOKENS {
        return Err(format!(
            "{} tokens: an expression may have at most {MAX_TOKENS}",
            toks.len()
        ));
    }
    let mut p = Parser {
        toks: &toks,
        pos: 0,
    };
    let e = p.expr(0)?;
    if p.pos != toks.len() {
        return Err(format!("unexpected {:?}", toks[p.pos]));
    }
    e.eval(vars)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

fn binding_power(t: &Tok) -> Option<(u8, &'static str)> {
    match t {
        Tok::Ident(s) if s == "or" => Some((1, "or")),
        Tok::Ident(s) if s == "and" => Some((2, "and")),
        Tok::Sym(s @ ("==" | "!=" | "<" | ">" | "<=" | ">=")) => Some((3, s)),
        Tok::Sym(s @ ("+" | "-")) => Some((4, s)),
        Tok::Sym(s @ ("*" | "/" | "%")) => Some((5, s)),
        _ => None,
    }
}

impl Parser<'_> {
    fn next(&mut self) -> Option<&Tok> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    fn peek_sym(&self, s: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if *x == s)
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Sym(x)) if *x == s => Ok(()),
            other => Err(format!("expected '{s}', found {other:?}")),
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, String> {
        let mut lhs = self.postfix()?;
        while let Some((bp, op)) = self.toks.get(self.pos).and_then(binding_power) {
            if bp <= min_bp {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(bp)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while self.peek_sym("[") {
            self.pos += 1;
            let idx = self.expr(0)?;
            self.expect("]")?;
            e = Expr::Index(Box::new(e), Box::new(idx));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next().cloned() {
            Some(Tok::Num(n)) => Ok(Expr::Lit(Value::Num(n))),
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::Str(s))),
            Some(Tok::Sym("-")) => Ok(Expr::Neg(Box::new(self.expr(5)?))),
            Some(Tok::Sym("(")) => {
                let v = self.expr(0)?;
                self.expect(")")?;
                Ok(v)
            }
            Some(Tok::Ident(name)) if name == "not" => Ok(Expr::Not(Box::new(self.expr(3)?))),
            Some(Tok::Ident(name)) if self.peek_sym("(") => {
                self.pos += 1;
                let mut args = vec![self.expr(0)?];
                while self.peek_sym(",") {
                    self.pos += 1;
                    args.push(self.expr(0)?);
                }
                self.expect(")")?;
                Ok(Expr::Call(name, args))
            }
            Some(Tok::Ident(name)) => Ok(Expr::Name(name)),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn num(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Num(n) => Ok(*n),
        other => Err(format!("{what} needs a number, found {other}")),
    }
}

impl Expr {
    fn eval(&self, vars: &BTreeMap<String, Value>) -> Result<Value, String> {
        let bool_num = |x: bool| Value::Num(x as u8 as f64);
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Name(n) => vars
                .get(n)
                .cloned()
                .ok_or_else(|| format!("unknown name '{n}'"))?,
            Expr::Neg(e) => Value::Num(-num(&e.eval(vars)?, "'-'")?),
            Expr::Not(e) => bool_num(!e.eval(vars)?.truthy()),
            Expr::Index(l, i) => {
                let list = l.eval(vars)?;
                let i = num(&i.eval(vars)?, "an index")?;
                match &list {
                    Value::List(items) => items
                        .get(i as usize)
                        .cloned()
                        .ok_or_else(|| format!("index {i} is outside a list of {}", items.len()))?,
                    other => return Err(format!("cannot index {other}")),
                }
            }
            Expr::Call(f, args) if f == "if" => match args.as_slice() {
                [c, a, b] => {
                    if c.eval(vars)?.truthy() {
                        a.eval(vars)?
                    } else {
                        b.eval(vars)?
                    }
                }
                _ => return Err("if takes (condition, then, else)".into()),
            },
            // A key that holds one value for every layer, or a list of one per layer.
            Expr::Call(f, args) if f == "at" => match args.as_slice() {
                [l, i] => match l.eval(vars)? {
                    Value::List(items) => {
                        let i = num(&i.eval(vars)?, "an index")?;
                        items.get(i as usize).cloned().ok_or_else(|| {
                            format!("index {i} is outside a list of {}", items.len())
                        })?
                    }
                    one => one,
                },
                _ => return Err("at takes (list or value, index)".into()),
            },
            Expr::Call(f, args) if f == "len" => match args.as_slice() {
                [l] => match l.eval(vars)? {
                    Value::List(items) => Value::Num(items.len() as f64),
                    Value::Str(s) => Value::Num(s.len() as f64),
                    other => return Err(format!("len of {other}")),
                },
                _ => return Err("len takes one argument".into()),
            },
            Expr::Call(f, args) => {
                let nums = args
                    .iter()
                    .map(|a| num(&a.eval(vars)?, f))
                    .collect::<Result<Vec<_>, _>>()?;
                match (f.as_str(), nums.as_slice()) {
                    ("sqrt", [x]) => Value::Num(x.sqrt()),
                    ("min", [a, b]) => Value::Num(a.min(*b)),
                    ("max", [a, b]) => Value::Num(a.max(*b)),
                    _ => {
                        return Err(format!(
                            "unknown function {f} with {} argument(s)",
                            nums.len()
                        ))
                    }
                }
            }
            Expr::Bin(op, a, b) => {
                if *op == "and" {
                    return Ok(bool_num(a.eval(vars)?.truthy() && b.eval(vars)?.truthy()));
                }
                if *op == "or" {
                    return Ok(bool_num(a.eval(vars)?.truthy() || b.eval(vars)?.truthy()));
                }
                let (a, b) = (a.eval(vars)?, b.eval(vars)?);
                match *op {
                    "==" => bool_num(a == b),
                    "!=" => bool_num(a != b),
                    _ => {
                        let (x, y) = (num(&a, op)?, num(&b, op)?);
                        match *op {
                            "+" => Value::Num(x + y),
                            "-" => Value::Num(x - y),
                            "*" => Value::Num(x * y),
                            "/" => Value::Num(x / y),
                            "%" => Value::Num(x % y),
                            "<" => bool_num(x < y),
                            ">" => bool_num(x > y),
                            "<=" => bool_num(x <= y),
                            ">=" => bool_num(x >= y),
                            _ => unreachable!("binding_power only yields known operators"),
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the expr and template fuzzers: nesting this deep overflowed the stack.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let v = BTreeMap::new();
        let deep = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
        let e = eval(&deep, &v).unwrap_err();
        assert!(e.contains("100001 tokens"), "{e}");
        let long = vec!["1"; 40_000].join("+");
        assert!(eval(&long, &v).is_err());
        assert_eq!(
            eval(&format!("{}1{}", "(".repeat(100), ")".repeat(100)), &v),
            Ok(Value::Num(1.0))
        );
    }

    #[test]
    fn arithmetic_names_lists_and_lazy_if() {
        let mut v = BTreeMap::new();
        v.insert("hidden".to_string(), Value::Num(576.0));
        v.insert("n_heads".to_string(), Value::Num(9.0));
        v.insert("kind".to_string(), Value::Str("pairs".into()));
        v.insert(
            "types".to_string(),
            Value::List(vec![Value::Str("a".into()), Value::Str("b".into())]),
        );
        v.insert("none".to_string(), Value::List(vec![]));
        assert_eq!(eval("hidden / n_heads", &v), Ok(Value::Num(64.0)));
        assert_eq!(eval("1 / sqrt(64)", &v), Ok(Value::Num(0.125)));
        assert_eq!(eval("2 + 3 * 4 - 1", &v), Ok(Value::Num(13.0)));
        assert_eq!(eval("1e-6", &v), Ok(Value::Num(1e-6)));
        assert_eq!(eval("kind == 'pairs' and not 0", &v), Ok(Value::Num(1.0)));
        assert_eq!(eval("(5 + 1) % 4 == 2", &v), Ok(Value::Num(1.0)));
        assert_eq!(eval("-hidden + 1", &v), Ok(Value::Num(-575.0)));
        assert_eq!(eval("types[1] == 'b'", &v), Ok(Value::Num(1.0)));
        // at(): one value for every layer, or one per layer.
        assert_eq!(eval("at(n_heads, 5)", &v), Ok(Value::Num(9.0)));
        assert_eq!(eval("at(types, 0)", &v), Ok(Value::Str("a".into())));
        assert!(eval("at(types, 2)", &v).is_err());
        assert_eq!(
            eval("if(len(none) > 0, none[3], 7)", &v),
            Ok(Value::Num(7.0))
        );
        assert!(eval("none[3]", &v).unwrap_err().contains("outside"));
        assert!(eval("nope + 1", &v)
            .unwrap_err()
            .contains("unknown name 'nope'"));
        assert!(eval("kind * 2", &v).is_err());
        assert!(eval("1 +", &v).is_err());
    }
}
