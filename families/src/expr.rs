//! The small expression language of templates: numbers, 'strings', hyperparameter
//! names, `+ - * / %`, comparisons, `and`/`or`/`not`, and `sqrt`, `min`, `max`.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Str(String),
}

impl Value {
    pub fn truthy(&self) -> bool {
        match self {
            Value::Num(n) => *n != 0.0,
            Value::Str(s) => !s.is_empty(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "'{s}'"),
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
            let sym = ["==", "!=", "<=", ">="].into_iter().find(|s| *s == two);
            if let Some(s) = sym {
                out.push(Tok::Sym(s));
                i += 2;
            } else {
                let s = ["+", "-", "*", "/", "%", "(", ")", ",", "<", ">"]
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

/// Evaluates `src` with `vars` in scope.
pub fn eval(src: &str, vars: &BTreeMap<String, Value>) -> Result<Value, String> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        vars,
    };
    let v = p.expr(0)?;
    if p.pos != toks.len() {
        return Err(format!("unexpected {:?}", toks[p.pos]));
    }
    Ok(v)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    vars: &'a BTreeMap<String, Value>,
}

fn num(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Num(n) => Ok(*n),
        Value::Str(s) => Err(format!("{what} needs a number, found '{s}'")),
    }
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

    fn expect(&mut self, s: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Sym(x)) if *x == s => Ok(()),
            other => Err(format!("expected '{s}', found {other:?}")),
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Value, String> {
        let mut lhs = self.atom()?;
        while let Some((bp, op)) = self.toks.get(self.pos).and_then(binding_power) {
            if bp <= min_bp {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(bp)?;
            lhs = apply(op, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn atom(&mut self) -> Result<Value, String> {
        match self.next().cloned() {
            Some(Tok::Num(n)) => Ok(Value::Num(n)),
            Some(Tok::Str(s)) => Ok(Value::Str(s)),
            Some(Tok::Sym("-")) => Ok(Value::Num(-num(&self.expr(5)?, "'-'")?)),
            Some(Tok::Sym("(")) => {
                let v = self.expr(0)?;
                self.expect(")")?;
                Ok(v)
            }
            Some(Tok::Ident(name)) if name == "not" => {
                Ok(Value::Num((!self.expr(3)?.truthy()) as u8 as f64))
            }
            Some(Tok::Ident(name)) if matches!(self.toks.get(self.pos), Some(Tok::Sym("("))) => {
                self.pos += 1;
                let mut args = vec![self.expr(0)?];
                while matches!(self.toks.get(self.pos), Some(Tok::Sym(","))) {
                    self.pos += 1;
                    args.push(self.expr(0)?);
                }
                self.expect(")")?;
                let nums = args
                    .iter()
                    .map(|a| num(a, &name))
                    .collect::<Result<Vec<_>, _>>()?;
                match (name.as_str(), nums.as_slice()) {
                    ("sqrt", [x]) => Ok(Value::Num(x.sqrt())),
                    ("min", [a, b]) => Ok(Value::Num(a.min(*b))),
                    ("max", [a, b]) => Ok(Value::Num(a.max(*b))),
                    _ => Err(format!(
                        "unknown function {name} with {} argument(s)",
                        nums.len()
                    )),
                }
            }
            Some(Tok::Ident(name)) => self
                .vars
                .get(&name)
                .cloned()
                .ok_or_else(|| format!("unknown name '{name}'")),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn apply(op: &str, a: Value, b: Value) -> Result<Value, String> {
    let bool_num = |x: bool| Value::Num(x as u8 as f64);
    match op {
        "and" => return Ok(bool_num(a.truthy() && b.truthy())),
        "or" => return Ok(bool_num(a.truthy() || b.truthy())),
        "==" => return Ok(bool_num(a == b)),
        "!=" => return Ok(bool_num(a != b)),
        _ => {}
    }
    let (x, y) = (num(&a, op)?, num(&b, op)?);
    Ok(match op {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_names() {
        let mut v = BTreeMap::new();
        v.insert("hidden".to_string(), Value::Num(576.0));
        v.insert("n_heads".to_string(), Value::Num(9.0));
        v.insert("kind".to_string(), Value::Str("pairs".into()));
        assert_eq!(eval("hidden / n_heads", &v), Ok(Value::Num(64.0)));
        assert_eq!(eval("1 / sqrt(64)", &v), Ok(Value::Num(0.125)));
        assert_eq!(eval("2 + 3 * 4 - 1", &v), Ok(Value::Num(13.0)));
        assert_eq!(eval("1e-6", &v), Ok(Value::Num(1e-6)));
        assert_eq!(eval("kind == 'pairs' and not 0", &v), Ok(Value::Num(1.0)));
        assert_eq!(eval("(5 + 1) % 4 == 2", &v), Ok(Value::Num(1.0)));
        assert_eq!(eval("-hidden + 1", &v), Ok(Value::Num(-575.0)));
        assert!(eval("nope + 1", &v)
            .unwrap_err()
            .contains("unknown name 'nope'"));
        assert!(eval("kind * 2", &v).is_err());
        assert!(eval("1 +", &v).is_err());
    }
}
