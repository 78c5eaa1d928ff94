//! WQL, the query language of ExecQuery and indication filters:
//! `SELECT * | prop[, prop...] FROM Class [WHERE condition]`, where a
//! condition combines `prop op literal` (=, <>, !=, <, <=, >, >=),
//! `prop IS [NOT] NULL` and `prop ISA Class` with AND, OR, NOT and
//! parentheses. Literals: 'strings' or "strings", numbers, TRUE, FALSE, NULL.
//! String comparison is case-sensitive; property names are not.

use super::schema::Schema;
use super::value::{Instance, Value};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Selected properties; `None` for `*`.
    pub select: Option<Vec<String>>,
    /// The FROM class.
    pub class: String,
    /// The WHERE condition.
    pub cond: Option<Expr>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// =
    Eq,
    /// <> or !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// NULL.
    Null,
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// `prop op literal`.
    Cmp(String, Op, Lit),
    /// `prop IS NULL` (false) or `prop IS NOT NULL` (true).
    IsNull(String, bool),
    /// `prop ISA Class`: the property holds an embedded instance of Class.
    Isa(String, String),
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WQL query: {0}")]
pub struct WqlError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    LParen,
    RParen,
    Comma,
    Star,
}

fn lex(q: &str) -> Result<Vec<Tok>, WqlError> {
    let b: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '*' => {
                out.push(Tok::Star);
                i += 1
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1
            }
            '!' if b.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '<' | '>' => {
                let next = b.get(i + 1).copied();
                let (op, n) = match (c, next) {
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    _ => (Op::Gt, 1),
                };
                out.push(Tok::Op(op));
                i += n
            }
            '\'' | '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(WqlError("unterminated string".into())),
                        Some('\\') if b.get(i + 1).is_some() => {
                            s.push(b[i + 1]);
                            i += 2
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let st = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                    i += 1;
                }
                let t: String = b[st..i].iter().collect();
                let n = if let Some(h) = t.strip_prefix("0x") {
                    u64::from_str_radix(h, 16).ok().map(|v| v as f64)
                } else {
                    t.parse().ok()
                };
                out.push(Tok::Num(
                    n.ok_or_else(|| WqlError(format!("bad number {t:?}")))?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => {
                let st = i;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Ident(b[st..i].iter().collect()));
            }
            c => return Err(WqlError(format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(k)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self, what: &str) -> Result<String, WqlError> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            _ => Err(WqlError(format!("{what} expected"))),
        }
    }
    fn or(&mut self) -> Result<Expr, WqlError> {
        let mut l = self.and()?;
        while self.kw("OR") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, WqlError> {
        let mut l = self.unary()?;
        while self.kw("AND") {
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, WqlError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(WqlError("condition nested too deeply".into()));
        }
        let r = if self.kw("NOT") {
            Ok(Expr::Not(Box::new(self.unary()?)))
        } else if self.peek() == Some(&Tok::LParen) {
            self.at += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err(WqlError("')' expected".into()));
            }
            Ok(e)
        } else {
            self.primary()
        };
        self.depth -= 1;
        r
    }
    fn primary(&mut self) -> Result<Expr, WqlError> {
        let prop = self.ident("property name")?;
        if self.kw("IS") {
            let not = self.kw("NOT");
            if !self.kw("NULL") {
                return Err(WqlError("NULL expected after IS".into()));
            }
            return Ok(Expr::IsNull(prop, not));
        }
        if self.kw("ISA") {
            return Ok(Expr::Isa(prop, self.ident("class name")?));
        }
        let op = match self.next() {
            Some(Tok::Op(op)) => op,
            _ => return Err(WqlError(format!("operator expected after {prop}"))),
        };
        let lit = match self.next() {
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Num(n)) => Lit::Num(n),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("TRUE") => Lit::Bool(true),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("FALSE") => Lit::Bool(false),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("NULL") => Lit::Null,
            _ => return Err(WqlError(format!("literal expected after {prop}"))),
        };
        Ok(Expr::Cmp(prop, op, lit))
    }
}

/// Parse a WQL query.
pub fn parse(q: &str) -> Result<Query, WqlError> {
    let mut p = P {
        toks: lex(q)?,
        at: 0,
        depth: 0,
    };
    if !p.kw("SELECT") {
        return Err(WqlError("SELECT expected".into()));
    }
    let select = if p.peek() == Some(&Tok::Star) {
        p.at += 1;
        None
    } else {
        let mut v = vec![p.ident("property name")?];
        while p.peek() == Some(&Tok::Comma) {
            p.at += 1;
            v.push(p.ident("property name")?);
        }
        Some(v)
    };
    if !p.kw("FROM") {
        return Err(WqlError("FROM expected".into()));
    }
    let class = p.ident("class name")?;
    let cond = if p.kw("WHERE") { Some(p.or()?) } else { None };
    if p.peek().is_some() {
        return Err(WqlError("unexpected text after the query".into()));
    }
    Ok(Query {
        select,
        class,
        cond,
    })
}

fn cmp(v: &Value, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Value::Null, _) | (_, Lit::Null) => None,
        (Value::Str(a), Lit::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Uint(a), Lit::Num(b)) => (*a as f64).partial_cmp(b),
        (Value::Sint(a), Lit::Num(b)) => (*a as f64).partial_cmp(b),
        (Value::Real(a), Lit::Num(b)) => a.partial_cmp(b),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Value::Ref(p), Lit::Str(b)) => Some(p.to_string().as_str().cmp(b.as_str())),
        _ => None,
    };
    match (ord, op) {
        (None, _) => false,
        (Some(o), Op::Eq) => o == Ordering::Equal,
        (Some(o), Op::Ne) => o != Ordering::Equal,
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Le) => o != Ordering::Greater,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Ge) => o != Ordering::Less,
    }
}

fn prop<'a>(inst: &'a Instance, name: &str) -> &'a Value {
    // `SourceInstance.Prop` reaches into an embedded instance.
    match name.split_once('.') {
        Some((outer, inner)) => match inst.get(outer) {
            Value::Instance(i) => i.get(inner),
            _ => &Value::Null,
        },
        None => inst.get(name),
    }
}

/// Evaluate a condition on an instance.
pub fn eval(e: &Expr, inst: &Instance, schema: &Schema) -> bool {
    match e {
        Expr::And(a, b) => eval(a, inst, schema) && eval(b, inst, schema),
        Expr::Or(a, b) => eval(a, inst, schema) || eval(b, inst, schema),
        Expr::Not(a) => !eval(a, inst, schema),
        Expr::Cmp(p, op, lit) => cmp(prop(inst, p), *op, lit),
        Expr::IsNull(p, not) => matches!(prop(inst, p), Value::Null) != *not,
        Expr::Isa(p, class) => match prop(inst, p) {
            Value::Instance(i) => schema.is_a(&i.class, class),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let s = super::super::schema::schema();
        let q = parse("SELECT Name, ElementName FROM CIM_ComputerSystem WHERE ElementName = 'vm1' OR (EnabledState <> 2 AND NOT Caption IS NULL)").unwrap();
        assert_eq!(q.class, "CIM_ComputerSystem");
        assert_eq!(q.select.as_ref().unwrap().len(), 2);
        let i = Instance::new("CIM_ComputerSystem")
            .with("ElementName", Value::s("vm1"))
            .with("EnabledState", Value::Uint(2));
        assert!(eval(q.cond.as_ref().unwrap(), &i, &s));
        let j = i.clone().with("ElementName", Value::s("vm2"));
        assert!(!eval(q.cond.as_ref().unwrap(), &j, &s));
        let k = parse("select * from CIM_InstModification where SourceInstance isa CIM_System")
            .unwrap();
        let ind = Instance::new("CIM_InstModification")
            .with("SourceInstance", Value::Instance(Box::new(i)));
        assert!(eval(k.cond.as_ref().unwrap(), &ind, &s));
    }

    #[test]
    fn refuses_garbage() {
        for q in [
            "",
            "SELECT",
            "SELECT * FROM",
            "SELECT * FROM X WHERE",
            "SELECT * FROM X WHERE a = ",
            "SELECT * FROM X WHERE a = 'x",
            "SELECT * FROM X extra",
            "DELETE FROM X",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
        let deep = format!(
            "SELECT * FROM X WHERE {}a = 1{}",
            "(".repeat(200),
            ")".repeat(200)
        );
        assert!(parse(&deep).is_err());
    }
}
