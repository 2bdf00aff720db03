//! OData query options as Graph's directory endpoints implement them: `$select`, `$top`,
//! `$filter`, `$count`, `$skiptoken`, `$expand`; and paging with `@odata.nextLink`.
//!
//! `$filter` is parsed into an expression tree by a small recursive-descent parser (`and`, `or`,
//! `not`, parentheses, `eq`/`ne`/`ge`/`le`, `in (...)`, `startsWith(p,'x')`, `endsWith(p,'x')`),
//! then checked against a per-resource table of supported (property, operator) pairs: an operator
//! Graph only allows as an "advanced query" (`ne`, `not`, `endsWith`) needs the
//! `ConsistencyLevel: eventual` header and `$count=true`, as Graph requires; an unsupported pair is
//! Graph's 400 `Request_UnsupportedQuery`. Outside advanced queries the directory's limits
//! apply too: at most 15 clauses under an `or` or values in an `in` ("Too many child clauses
//! ...: 16. Max allowed: 15."), and a flattened expression height of 3.
//!
//! Skip tokens are opaque: base64url of the position to resume at and a digest of the query they
//! belong to, followed by a check digest. They survive URL round-trips (only `[A-Za-z0-9_-.]`); a
//! tampered token, or one reused with a different query, is a 400.

use base64::Engine as _;
use sha2::Digest as _;

use super::error::{GraphError, GraphResult};

/// The decoded query string, keys lower-cased and with the `$` made explicit.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

/// Options Graph accepts on the endpoints the sandbox serves.
const KNOWN: &[&str] = &[
    "$select",
    "$top",
    "$filter",
    "$count",
    "$skiptoken",
    "$expand",
    "$orderby",
    "$search",
    "$skip",
    "$format",
];

impl Query {
    /// Parses a raw query string. Option names are case-insensitive and may omit the `$`.
    pub fn parse(raw: Option<&str>) -> GraphResult<Query> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let lower = k.to_ascii_lowercase();
            let key = if lower.starts_with('$') {
                lower
            } else if KNOWN.contains(&format!("${lower}").as_str()) {
                format!("${lower}")
            } else {
                // Graph ignores query parameters that are not OData options.
                continue;
            };
            if !KNOWN.contains(&key.as_str()) {
                return Err(GraphError::bad_request(format!(
                    "The query parameter '{k}' is not supported."
                )));
            }
            if pairs.iter().any(|(x, _)| *x == key) {
                return Err(GraphError::bad_request(format!(
                    "Query option '{k}' was specified more than once, but it must be specified at most once."
                )));
            }
            pairs.push((key, v.into_owned()));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses options the sandbox does not implement, rather than silently ignoring them.
    pub fn refuse_unimplemented(&self, allowed: &[&str]) -> GraphResult<()> {
        for (k, _) in &self.pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(GraphError::unsupported_query(format!(
                    "The query option '{k}' is not supported on this resource by the sandbox."
                )));
            }
        }
        Ok(())
    }

    /// `$top`: 1..=999, default `default`.
    pub fn top(&self, default: usize) -> GraphResult<usize> {
        match self.get("$top") {
            None => Ok(default),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (1..=999).contains(&n) => Ok(n as usize),
                Ok(n) => Err(GraphError::request_bad_request(format!(
                    "Invalid page size specified: '{n}'. Must be between 1 and 999 inclusive."
                ))),
                Err(_) => Err(GraphError::bad_request(format!(
                    "Invalid value '{v}' for $top query option found. The $top query option requires a non-negative integer value."
                ))),
            },
        }
    }

    /// `$count=true|false`.
    pub fn count(&self) -> GraphResult<bool> {
        match self.get("$count").map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(GraphError::bad_request(format!(
                "'{v}' is not a valid count option."
            ))),
        }
    }

    /// The query without `$skiptoken`, for skip-token binding and next links.
    fn without_skiptoken(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .cloned()
            .collect()
    }
}

/// `ConsistencyLevel: eventual` present.
pub fn eventual(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// `$count=true` needs `ConsistencyLevel: eventual` on directory objects.
pub fn check_count(query: &Query, headers: &axum::http::HeaderMap) -> GraphResult<bool> {
    let count = query.count()?;
    if count && !eventual(headers) {
        return Err(GraphError::request_bad_request(
            "$count is not currently supported.",
        ));
    }
    Ok(count)
}

/// A property of a resource type, as `$select` names it.
pub struct Property<T> {
    pub name: &'static str,
    pub get: fn(&T) -> serde_json::Value,
}

/// One row of a [`Property`] table: `property!("id", |u| json!(u.id))` (the row type comes from
/// the table the row is written into).
macro_rules! property {
    ($name:literal, $f:expr) => {
        $crate::odata::Property {
            name: $name,
            get: $f,
        }
    };
}
pub(crate) use property;

/// What a collection endpoint accepts: its `$filter` rules (`None`: no `$filter`) and its
/// `$select` property table.
pub struct CollectionSpec<T: 'static> {
    pub filters: Option<&'static [FilterRule]>,
    /// resource name in filter error messages (`User`, `Group`)
    pub resource: &'static str,
    pub props: &'static [Property<T>],
    pub default: &'static [&'static str],
    /// `microsoft.graph.user`, for `$select` error messages
    pub type_name: &'static str,
}

/// The validated query options of one collection request.
pub struct CollectionQuery<T: 'static> {
    pub query: Query,
    pub top: usize,
    pub want_count: bool,
    pub filter: Option<Filter>,
    pub props: Vec<&'static Property<T>>,
    /// index of the first item of this page (from `$skiptoken`)
    pub start: usize,
}

/// Parses and checks `$top`, `$count` (with `ConsistencyLevel`), `$filter`, `$select` and the
/// skip token of a collection request, refusing options the endpoint does not implement.
pub fn collection_query<T>(
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    spec: &CollectionSpec<T>,
    skip_secret: &str,
) -> GraphResult<CollectionQuery<T>> {
    let query = Query::parse(uri.query())?;
    if spec.filters.is_some() {
        query.refuse_unimplemented(&["$select", "$top", "$filter", "$count", "$skiptoken"])?;
    } else {
        query.refuse_unimplemented(&["$select", "$top", "$count", "$skiptoken"])?;
    }
    let top = query.top(100)?;
    let want_count = check_count(&query, headers)?;
    let advanced = want_count && eventual(headers);
    let filter = match (spec.filters, query.get("$filter")) {
        (Some(rules), Some(f)) if !f.trim().is_empty() => {
            let f = parse_filter(f)?;
            check_filter(&f, rules, spec.resource, advanced)?;
            check_complexity(&f, advanced)?;
            Some(f)
        }
        _ => None,
    };
    let props = select(&query, spec.props, spec.default, spec.type_name)?;
    let start = page_start(uri.path(), &query, skip_secret)?;
    Ok(CollectionQuery {
        query,
        top,
        want_count,
        filter,
        props,
        start,
    })
}

/// Resolves `$select` against a property table: canonical names, in the order asked.
pub fn select<T>(
    query: &Query,
    table: &'static [Property<T>],
    default: &[&'static str],
    type_name: &str,
) -> GraphResult<Vec<&'static Property<T>>> {
    let names: Vec<String> = match query.get("$select") {
        None => default.iter().map(|s| s.to_string()).collect(),
        Some(s) if s.trim().is_empty() => default.iter().map(|s| s.to_string()).collect(),
        Some(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
    };
    let mut out: Vec<&'static Property<T>> = Vec::new();
    for n in names {
        if n.is_empty() {
            return Err(GraphError::bad_request(
                "Syntax error: character ',' is not valid at this position of the $select clause.",
            ));
        }
        let Some(p) = table.iter().find(|p| p.name.eq_ignore_ascii_case(&n)) else {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{n}' on type '{type_name}'."
            )));
        };
        if !out.iter().any(|q| std::ptr::eq(*q, p)) {
            out.push(p);
        }
    }
    // Graph always returns the id alongside a $select.
    if !out.iter().any(|p| p.name == "id") {
        if let Some(id) = table.iter().find(|p| p.name == "id") {
            out.push(id);
        }
    }
    Ok(out)
}

/// Renders one object with the selected properties.
pub fn render<T>(
    item: &T,
    props: &[&'static Property<T>],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::with_capacity(props.len());
    for p in props {
        m.insert(p.name.to_owned(), (p.get)(item));
    }
    m
}

/// The `(a,b)` part of an `@odata.context` for an explicit `$select`.
pub fn context_select(query: &Query) -> String {
    match query.get("$select") {
        Some(s) if !s.trim().is_empty() => format!(
            "({})",
            s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        ),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// $filter

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Str(String),
    Bool(bool),
    Null,
    Num(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp { prop: String, op: Op, value: Lit },
    In { prop: String, values: Vec<Lit> },
    StartsWith { prop: String, value: String },
    EndsWith { prop: String, value: String },
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
}

fn invalid_filter(detail: &str) -> GraphError {
    GraphError::bad_request(format!("Invalid filter clause: {detail}"))
}

fn lex(s: &str) -> GraphResult<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid_filter("unterminated string literal.")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_alphanumeric() || "_/.-@".contains(c) => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_/.-@".contains(chars[i]))
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(invalid_filter(&format!(
                    "Syntax error at position {i}: unexpected character '{other}'."
                )))
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

/// Nesting beyond this is refused before it can exhaust the stack.
const MAX_NESTING: usize = 32;

impl Parser {
    fn peek_ident(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word))
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> GraphResult<()> {
        if self.next() == Some(t) {
            Ok(())
        } else {
            Err(invalid_filter(&format!("expected {what}.")))
        }
    }
    fn or(&mut self) -> GraphResult<Filter> {
        let mut left = self.and()?;
        while self.peek_ident("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> GraphResult<Filter> {
        let mut left = self.unary()?;
        while self.peek_ident("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> GraphResult<Filter> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(invalid_filter("the expression is nested too deeply."));
        }
        let f = self.unary_inner();
        self.depth -= 1;
        f
    }
    fn unary_inner(&mut self) -> GraphResult<Filter> {
        if self.peek_ident("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Ident(word)) => {
                let lower = word.to_ascii_lowercase();
                if (lower == "startswith" || lower == "endswith")
                    && self.toks.get(self.pos) == Some(&Tok::LParen)
                {
                    self.pos += 1;
                    let Some(Tok::Ident(prop)) = self.next() else {
                        return Err(invalid_filter(&format!("expected a property in {word}.")));
                    };
                    self.expect(Tok::Comma, "','")?;
                    let Some(Tok::Str(value)) = self.next() else {
                        return Err(invalid_filter(&format!("expected a string in {word}.")));
                    };
                    self.expect(Tok::RParen, "')'")?;
                    return Ok(if lower == "startswith" {
                        Filter::StartsWith { prop, value }
                    } else {
                        Filter::EndsWith { prop, value }
                    });
                }
                let prop = word;
                let Some(Tok::Ident(op)) = self.next() else {
                    return Err(invalid_filter(&format!(
                        "expected an operator after '{prop}'."
                    )));
                };
                let op = match op.to_ascii_lowercase().as_str() {
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "ge" => Op::Ge,
                    "le" => Op::Le,
                    "gt" => Op::Gt,
                    "lt" => Op::Lt,
                    "in" => {
                        self.expect(Tok::LParen, "'(' after 'in'")?;
                        let mut values = Vec::new();
                        loop {
                            values.push(self.literal()?);
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                _ => return Err(invalid_filter("expected ',' or ')' in 'in'.")),
                            }
                        }
                        return Ok(Filter::In { prop, values });
                    }
                    other => return Err(invalid_filter(&format!("unknown operator '{other}'."))),
                };
                let value = self.literal()?;
                Ok(Filter::Cmp { prop, op, value })
            }
            _ => Err(invalid_filter("expected an expression.")),
        }
    }
    fn literal(&mut self) -> GraphResult<Lit> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Ident(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Ok(Lit::Bool(true)),
                "false" => Ok(Lit::Bool(false)),
                "null" => Ok(Lit::Null),
                _ => w
                    .parse::<i64>()
                    .map(Lit::Num)
                    .map_err(|_| invalid_filter(&format!("'{w}' is not a literal."))),
            },
            _ => Err(invalid_filter("expected a literal.")),
        }
    }
}

/// Parses a `$filter` expression.
pub fn parse_filter(s: &str) -> GraphResult<Filter> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(invalid_filter("the expression is empty."));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(invalid_filter("unexpected text after the expression."));
    }
    Ok(f)
}

/// Which operators a filterable property supports.
#[derive(Clone, Copy)]
pub struct FilterRule {
    pub prop: &'static str,
    /// eq and in
    pub eq: bool,
    /// ne / not (advanced)
    pub ne: bool,
    pub starts_with: bool,
    /// endsWith (advanced)
    pub ends_with: bool,
    /// ge / le
    pub range: bool,
}

fn advanced_needed(op: &str) -> GraphError {
    GraphError::unsupported_query(format!(
        "Operator '{op}' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
    ))
}

/// The request's `$filter`, parsed and checked against `rules` (the supported (property,
/// operator) pairs of `resource`); `None` when there is none (or it is blank).
pub fn checked_filter(
    query: &Query,
    rules: &[FilterRule],
    resource: &str,
) -> GraphResult<Option<Filter>> {
    match query.get("$filter") {
        Some(f) if !f.trim().is_empty() => {
            let f = parse_filter(f)?;
            check_filter(&f, rules, resource, false)?;
            Ok(Some(f))
        }
        _ => Ok(None),
    }
}

/// Checks a filter against the supported (property, operator) table of a resource.
pub fn check_filter(
    f: &Filter,
    rules: &[FilterRule],
    resource: &str,
    advanced: bool,
) -> GraphResult<()> {
    let unsupported = |prop: &str| {
        GraphError::unsupported_query(format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."
        ))
    };
    let rule = |prop: &str| {
        rules
            .iter()
            .find(|r| r.prop.eq_ignore_ascii_case(prop))
            .copied()
            .ok_or_else(|| unsupported(prop))
    };
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_filter(a, rules, resource, advanced)?;
            check_filter(b, rules, resource, advanced)
        }
        Filter::Not(inner) => {
            if !advanced {
                return Err(advanced_needed("not"));
            }
            check_filter(inner, rules, resource, advanced)
        }
        Filter::Cmp { prop, op, .. } => {
            let r = rule(prop)?;
            match op {
                Op::Eq if r.eq => Ok(()),
                Op::Ne if r.ne && advanced => Ok(()),
                Op::Ne if r.ne => Err(advanced_needed("ne")),
                Op::Ge | Op::Le if r.range => Ok(()),
                _ => Err(unsupported(prop)),
            }
        }
        Filter::In { prop, .. } => {
            if rule(prop)?.eq {
                Ok(())
            } else {
                Err(unsupported(prop))
            }
        }
        Filter::StartsWith { prop, .. } => {
            if rule(prop)?.starts_with {
                Ok(())
            } else {
                Err(unsupported(prop))
            }
        }
        Filter::EndsWith { prop, .. } => {
            let r = rule(prop)?;
            if !r.ends_with {
                Err(unsupported(prop))
            } else if !advanced {
                Err(advanced_needed("endsWith"))
            } else {
                Ok(())
            }
        }
    }
}

/// Children of a node once runs of the same operator are flattened (`a and b and c` is one
/// `and` with three children, as the directory evaluates it).
fn flat_children<'a>(f: &'a Filter, out: &mut Vec<&'a Filter>) {
    match f {
        Filter::And(a, b) => {
            for x in [a, b] {
                if matches!(**x, Filter::And(..)) {
                    flat_children(x, out)
                } else {
                    out.push(x)
                }
            }
        }
        Filter::Or(a, b) => {
            for x in [a, b] {
                if matches!(**x, Filter::Or(..)) {
                    flat_children(x, out)
                } else {
                    out.push(x)
                }
            }
        }
        _ => {}
    }
}

/// Height of the flattened tree (a comparison is 1; `in` with several values is an `or`).
fn height(f: &Filter) -> usize {
    match f {
        Filter::And(..) | Filter::Or(..) => {
            let mut c = Vec::new();
            flat_children(f, &mut c);
            1 + c.iter().map(|x| height(x)).max().unwrap_or(0)
        }
        Filter::Not(x) => 1 + height(x),
        Filter::In { values, .. } if values.len() > 1 => 2,
        _ => 1,
    }
}

/// The largest number of clauses under one `or` (an `in` list counts its values).
fn widest_or(f: &Filter) -> usize {
    match f {
        Filter::Or(..) | Filter::And(..) => {
            let mut c = Vec::new();
            flat_children(f, &mut c);
            let own = if matches!(f, Filter::Or(..)) {
                c.len()
            } else {
                0
            };
            c.iter().map(|x| widest_or(x)).max().unwrap_or(0).max(own)
        }
        Filter::Not(x) => widest_or(x),
        Filter::In { values, .. } => values.len(),
        _ => 0,
    }
}

/// The directory's limits on a filter, outside advanced queries: at most 15 clauses under an
/// `or` (or values in an `in`), and a height of 3.
pub fn check_complexity(f: &Filter, advanced: bool) -> GraphResult<()> {
    if advanced {
        return Ok(());
    }
    let wide = widest_or(f);
    if wide > 15 {
        return Err(GraphError::unsupported_query(format!(
            "Too many child clauses specified in search filter expression containing 'OR' operators: {wide}. Max allowed: 15."
        )));
    }
    let h = height(f);
    if h > 3 {
        return Err(GraphError::unsupported_query(format!(
            "Search filter expression has excessive height: {h}. Max allowed: 3."
        )));
    }
    Ok(())
}

/// A property value as filters see it.
pub enum Val<'a> {
    Str(Option<&'a str>),
    Bool(Option<bool>),
}

fn cmp_str(a: &str, b: &str) -> std::cmp::Ordering {
    a.to_lowercase().cmp(&b.to_lowercase())
}

/// Evaluates a (checked) filter; `get` reads a property of the item.
pub fn eval<'a>(f: &Filter, get: &dyn Fn(&str) -> Val<'a>) -> bool {
    match f {
        Filter::And(a, b) => eval(a, get) && eval(b, get),
        Filter::Or(a, b) => eval(a, get) || eval(b, get),
        Filter::Not(x) => !eval(x, get),
        Filter::Cmp { prop, op, value } => {
            let ord = match (get(prop), value) {
                (Val::Str(v), Lit::Null) | (Val::Str(v), Lit::Str(_)) if v.is_none() => {
                    return match op {
                        Op::Eq => matches!(value, Lit::Null),
                        Op::Ne => !matches!(value, Lit::Null),
                        _ => false,
                    }
                }
                (Val::Bool(v), Lit::Null) => {
                    return match op {
                        Op::Eq => v.is_none(),
                        Op::Ne => v.is_some(),
                        _ => false,
                    }
                }
                (Val::Str(Some(_)), Lit::Null) => {
                    return matches!(op, Op::Ne);
                }
                (Val::Str(Some(a)), Lit::Str(b)) => cmp_str(a, b),
                // A null boolean equals neither true nor false (`onPremisesSyncEnabled eq false`
                // does not find cloud-only users, whose value is null; `ne true` does).
                (Val::Bool(None), Lit::Bool(_)) => return matches!(op, Op::Ne),
                (Val::Bool(Some(a)), Lit::Bool(b)) => a.cmp(b),
                _ => return false,
            };
            match op {
                Op::Eq => ord.is_eq(),
                Op::Ne => !ord.is_eq(),
                Op::Ge => ord.is_ge(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                Op::Lt => ord.is_lt(),
            }
        }
        Filter::In { prop, values } => values.iter().any(|v| {
            eval(
                &Filter::Cmp {
                    prop: prop.clone(),
                    op: Op::Eq,
                    value: v.clone(),
                },
                get,
            )
        }),
        Filter::StartsWith { prop, value } => match get(prop) {
            Val::Str(Some(s)) => s.to_lowercase().starts_with(&value.to_lowercase()),
            _ => false,
        },
        Filter::EndsWith { prop, value } => match get(prop) {
            Val::Str(Some(s)) => s.to_lowercase().ends_with(&value.to_lowercase()),
            _ => false,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// paging

fn digest(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

fn query_digest(path: &str, query: &Query) -> String {
    let q = query
        .without_skiptoken()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    digest(&["q", &path.to_lowercase(), &q])
}

/// Where a page starts: 0, or the position in a skip token.
pub fn page_start(path: &str, query: &Query, secret: &str) -> GraphResult<usize> {
    let Some(token) = query.get("$skiptoken") else {
        return Ok(0);
    };
    let bad = || {
        GraphError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your request.",
        )
    };
    let (payload, check) = token.rsplit_once('.').ok_or_else(bad)?;
    if digest(&["t", secret, payload]) != check {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (pos, qd) = raw.split_once(':').ok_or_else(bad)?;
    if qd != query_digest(path, query) {
        return Err(bad());
    }
    pos.parse().map_err(|_| bad())
}

/// The `@odata.nextLink` resuming at `next`.
pub fn next_link(base_url: &str, path: &str, query: &Query, next: usize, secret: &str) -> String {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{next}:{}", query_digest(path, query)));
    let token = format!("{payload}.{}", digest(&["t", secret, &payload]));
    let mut qs: Vec<String> = query
        .without_skiptoken()
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    qs.push(format!("$skiptoken={token}"));
    format!("{base_url}{path}?{}", qs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        let f =
            parse_filter("userPrincipalName eq 'o''brien@x.com' and startsWith(displayName,'A')")
                .unwrap();
        assert_eq!(
            f,
            Filter::And(
                Box::new(Filter::Cmp {
                    prop: "userPrincipalName".into(),
                    op: Op::Eq,
                    value: Lit::Str("o'brien@x.com".into())
                }),
                Box::new(Filter::StartsWith {
                    prop: "displayName".into(),
                    value: "A".into()
                })
            )
        );
        let f = parse_filter("id in ('a','b')").unwrap();
        assert!(matches!(f, Filter::In { ref values, .. } if values.len() == 2));
        let f = parse_filter("passwordProfile/forceChangePasswordNextSignIn eq true").unwrap();
        assert!(matches!(
            f,
            Filter::Cmp {
                value: Lit::Bool(true),
                ..
            }
        ));
        assert!(parse_filter("id eq").is_err());
        assert!(parse_filter("id eq 'x' extra").is_err());
        assert!(parse_filter("id eq 'x").is_err());
        assert!(parse_filter("").is_err());
    }

    #[test]
    fn directory_filter_limits() {
        let ids = |n: usize| {
            let v: Vec<String> = (0..n).map(|i| format!("'u{i}@x.com'")).collect();
            format!("userPrincipalName in ({})", v.join(","))
        };
        assert!(check_complexity(&parse_filter(&ids(15)).unwrap(), false).is_ok());
        let e = check_complexity(&parse_filter(&ids(16)).unwrap(), false).unwrap_err();
        assert_eq!(e.message, "Too many child clauses specified in search filter expression containing 'OR' operators: 16. Max allowed: 15.");
        assert!(check_complexity(&parse_filter(&ids(16)).unwrap(), true).is_ok());
        // a flat chain of `and` is height 2; the documented refusal is height 4
        let chain = parse_filter("id eq 'a' and id eq 'b' and id eq 'c' and id eq 'd'").unwrap();
        assert!(check_complexity(&chain, false).is_ok());
        let deep = parse_filter(
            "((id eq 'a' or (id eq 'b' and id eq 'c')) and startswith(displayName,'m'))",
        )
        .unwrap();
        let e = check_complexity(&deep, false).unwrap_err();
        assert_eq!(
            e.message,
            "Search filter expression has excessive height: 4. Max allowed: 3."
        );
        // nesting cannot exhaust the stack
        let nested = format!("{}id eq 'a'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_filter(&nested).is_err());
        assert!(parse_filter(&format!("{}id eq 'a'", "not ".repeat(10_000))).is_err());
    }

    #[test]
    fn skiptoken_round_trip_and_tamper() {
        let q = Query::parse(Some("$top=5&$select=id")).unwrap();
        let link = next_link("http://h", "/v1.0/users", &q, 10, "s");
        let url = url::Url::parse(&link).unwrap();
        let q2 = Query::parse(url.query()).unwrap();
        assert_eq!(page_start("/v1.0/users", &q2, "s").unwrap(), 10);
        // other query: refused
        let mut q3 = q2.clone();
        q3.pairs.retain(|(k, _)| k != "$top");
        assert!(page_start("/v1.0/users", &q3, "s").is_err());
        // tampered token
        let tok = q2.get("$skiptoken").unwrap().to_owned();
        let mut q4 = q2.clone();
        for (k, v) in &mut q4.pairs {
            if k == "$skiptoken" {
                *v = format!("{tok}x");
            }
        }
        assert!(page_start("/v1.0/users", &q4, "s").is_err());
    }
}
