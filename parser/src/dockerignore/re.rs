//! The part of Go's RE2 syntax (`regexp.Compile`, Perl flags) that the translation can produce,
//! run as a Pike VM. `|`, `+` and `{` never reach it unescaped, and `(` only as `(.*/)`.

/// Sorted, disjoint, inclusive code point ranges.
type Ranges = Vec<(u32, u32)>;

/// Zero-width assertions.
#[derive(Debug, Clone, Copy)]
enum Look {
    Start,
    End,
    Word,
    NotWord,
}

/// Instructions; jumps are relative, so fragments can be wrapped without patching.
#[derive(Debug, Clone)]
enum Inst {
    Lit(char),
    AnyNotNl,
    Class(Ranges),
    Look(Look),
    Split(isize, isize),
    Jmp(isize),
    Match,
}

/// A compiled expression. The translation always starts it with `^`, so threads start at
/// the beginning of the text only (Go's `MatchString` would try every position).
#[derive(Debug, Clone)]
pub(super) struct Regex {
    insts: Vec<Inst>,
}

fn normalize(mut ranges: Ranges, negated: bool) -> Ranges {
    ranges.sort_unstable();
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    if !negated {
        return merged;
    }
    let mut out = Vec::new();
    let mut next = 0;
    for (lo, hi) in merged {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    out.extend((next <= 0x10FFFF).then_some((next, 0x10FFFF)));
    out
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// `\d \D \s \S \w \W` (ASCII, as in Go); `\p`/`\P` need Unicode tables: unsupported.
fn perl_class(letter: char) -> Result<Option<Ranges>, String> {
    let base: &[(u32, u32)] = match letter.to_ascii_lowercase() {
        'd' => DIGIT,
        's' => &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
        'w' => WORD,
        'p' => return Err(format!("unsupported Unicode class escape `\\{letter}`")),
        _ => return Ok(None),
    };
    Ok(Some(normalize(base.to_vec(), letter.is_ascii_uppercase())))
}

/// `[:name:]` and `[:^name:]` (ASCII, as in Go).
fn posix_class(name: &str) -> Option<Ranges> {
    let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
    let negated = inner.starts_with('^');
    let ranges: &[(u32, u32)] = match inner.trim_start_matches('^') {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some(normalize(ranges.to_vec(), negated))
}

/// Wraps a fragment in `*` or `?`.
fn repeat(sub: Vec<Inst>, star: bool) -> Vec<Inst> {
    let len = sub.len() as isize;
    let mut out = vec![Inst::Split(1, len + 1 + isize::from(star))];
    out.extend(sub);
    out.extend(star.then_some(Inst::Jmp(-len - 1)));
    out
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_at(0)?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        let hit = s
            .chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c));
        self.pos += if hit { s.chars().count() } else { 0 };
        hit
    }

    /// A sequence of items up to `)` or the end (groups never nest).
    fn concat(&mut self) -> Result<Vec<Inst>, String> {
        let mut items: Vec<Vec<Inst>> = Vec::new();
        let mut repeated = false;
        while let Some(c) = self.peek_at(0).filter(|&c| c != ')') {
            self.pos += 1;
            let item = match c {
                '*' | '?' => {
                    self.eat("?"); // non-greedy: the same set of matches
                    let sub = items.pop().filter(|_| !repeated);
                    let sub = sub.ok_or_else(|| format!("bad repetition operator: `{c}`"))?;
                    items.push(repeat(sub, c == '*'));
                    repeated = true;
                    continue;
                }
                '(' => {
                    let inner = self.concat()?;
                    if !self.eat(")") {
                        return Err("missing closing ): `(`".to_owned());
                    }
                    inner
                }
                '[' => vec![Inst::Class(self.class()?)],
                '\\' if self.eat("Q") => {
                    // `\Q...\E`: literal text up to `\E` or the end.
                    while self.peek_at(0).is_some() && !self.eat("\\E") {
                        items.extend(self.bump().map(|c| vec![Inst::Lit(c)]));
                    }
                    repeated = false;
                    continue;
                }
                '\\' => vec![self.escape_outside_class()?],
                '.' => vec![Inst::AnyNotNl],
                '^' => vec![Inst::Look(Look::Start)],
                '$' => vec![Inst::Look(Look::End)],
                _ => vec![Inst::Lit(c)],
            };
            items.push(item);
            repeated = false;
        }
        Ok(items.into_iter().flatten().collect())
    }

    /// After a backslash outside a class.
    fn escape_outside_class(&mut self) -> Result<Inst, String> {
        let c = self
            .bump()
            .ok_or("trailing backslash at end of expression")?;
        Ok(match c {
            'A' => Inst::Look(Look::Start),
            'z' => Inst::Look(Look::End),
            'b' => Inst::Look(Look::Word),
            'B' => Inst::Look(Look::NotWord),
            _ => match perl_class(c)? {
                Some(ranges) => Inst::Class(ranges),
                None => Inst::Lit(self.escape(c)?),
            },
        })
    }

    /// Go's `parseEscape`, after the backslash and `c`.
    fn escape(&mut self, c: char) -> Result<char, String> {
        let invalid = || format!("invalid escape sequence: `\\{c}`");
        let octal = |p: &Self| p.peek_at(0).and_then(|d| d.to_digit(8));
        let value = match c {
            '1'..='7' if octal(self).is_none() => return Err(invalid()), // backreference
            '0'..='7' => {
                let mut value = c.to_digit(8).unwrap_or_default();
                for _ in 0..2 {
                    let Some(d) = octal(self) else { break };
                    value = value * 8 + d;
                    self.pos += 1;
                }
                value
            }
            'x' => {
                let mut hex = || self.bump().and_then(|d| d.to_digit(16));
                match (hex(), hex()) {
                    (Some(high), Some(low)) => high * 16 + low,
                    _ => return Err(invalid()),
                }
            }
            'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
                [7, 12, 10, 13, 9, 11]["afnrtv".find(c).unwrap_or(0)]
            }
            _ if c.is_ascii() && !c.is_ascii_alphanumeric() => u32::from(c),
            _ => return Err(invalid()),
        };
        char::from_u32(value).ok_or_else(invalid)
    }

    /// Go's `parseClass`, after the `[`.
    fn class(&mut self) -> Result<Ranges, String> {
        let negated = self.eat("^");
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            match self.peek_at(0) {
                None => return Err("missing closing ]".to_owned()),
                Some(']') if !first => break,
                _ => first = false,
            }
            if let Some(group) = self.named_class()? {
                ranges.extend(group);
                continue;
            }
            if self.peek_at(0) == Some('\\') {
                if let Some(group) = self.peek_at(1).map(perl_class).transpose()?.flatten() {
                    ranges.extend(group);
                    self.pos += 2;
                    continue;
                }
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek_at(0) == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
            }
            if hi < lo {
                return Err(format!("invalid character class range: `{lo}-{hi}`"));
            }
            ranges.push((u32::from(lo), u32::from(hi)));
        }
        self.pos += 1;
        Ok(normalize(ranges, negated))
    }

    /// `[:name:]`; like Go, the closing `:]` is looked for in the rest of the expression.
    fn named_class(&mut self) -> Result<Option<Ranges>, String> {
        if self.peek_at(0) != Some('[') || self.peek_at(1) != Some(':') {
            return Ok(None);
        }
        let rest = self.chars.get(self.pos + 2..).unwrap_or_default();
        let Some(i) = rest.windows(2).position(|w| w == [':', ']']) else {
            return Ok(None);
        };
        let end = self.pos + i + 4;
        let name: String = self
            .chars
            .get(self.pos..end)
            .unwrap_or_default()
            .iter()
            .collect();
        self.pos = end;
        let ranges = posix_class(&name);
        ranges
            .map(Some)
            .ok_or_else(|| format!("invalid character class range: `{name}`"))
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.bump() {
            None => Err("missing closing ]".to_owned()),
            Some('\\') => {
                let c = self
                    .bump()
                    .ok_or("trailing backslash at end of expression")?;
                self.escape(c)
            }
            Some(c) => Ok(c),
        }
    }
}

fn is_word(c: &char) -> bool {
    c.is_ascii_alphanumeric() || *c == '_'
}

impl Regex {
    pub(super) fn new(expr: &str) -> Result<Self, String> {
        let mut parser = Parser {
            chars: expr.chars().collect(),
            pos: 0,
        };
        let mut insts = parser.concat()?;
        if parser.pos < parser.chars.len() {
            return Err("unexpected ): `)`".to_owned());
        }
        insts.push(Inst::Match);
        Ok(Regex { insts })
    }

    /// Adds the threads reachable from `pc` at `pos` to `list`; true on reaching Match.
    /// `marks[pc] == pos + 1` means already added for `pos` (each list has its own `pos`).
    fn add(
        &self,
        list: &mut Vec<usize>,
        marks: &mut [usize],
        pc: usize,
        text: &[char],
        pos: usize,
    ) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            match marks.get_mut(pc) {
                Some(mark) if *mark != pos + 1 => *mark = pos + 1,
                _ => continue,
            }
            let jump = |offset: &isize| pc.checked_add_signed(*offset);
            let before = || {
                pos.checked_sub(1)
                    .and_then(|i| text.get(i))
                    .is_some_and(is_word)
            };
            let after = || text.get(pos).is_some_and(is_word);
            let holds = |look: &Look| match look {
                Look::Start => pos == 0,
                Look::End => pos == text.len(),
                Look::Word => before() != after(),
                Look::NotWord => before() == after(),
            };
            match self.insts.get(pc) {
                Some(Inst::Match) => return true,
                Some(Inst::Jmp(to)) => stack.extend(jump(to)),
                Some(Inst::Split(a, b)) => stack.extend([jump(b), jump(a)].into_iter().flatten()),
                Some(Inst::Look(look)) => stack.extend(holds(look).then_some(pc + 1)),
                Some(_) => list.push(pc),
                None => {}
            }
        }
        false
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let mut marks = vec![0; self.insts.len()];
        let (mut current, mut next) = (Vec::new(), Vec::new());
        for pos in 0..=text.len() {
            if pos == 0 && self.add(&mut current, &mut marks, 0, &text, pos) {
                return true;
            }
            let Some(&c) = text.get(pos) else { break };
            for &pc in &current {
                let step = match self.insts.get(pc) {
                    Some(Inst::Lit(lit)) => *lit == c,
                    Some(Inst::AnyNotNl) => c != '\n',
                    Some(Inst::Class(ranges)) => ranges
                        .iter()
                        .any(|&(lo, hi)| (lo..=hi).contains(&u32::from(c))),
                    _ => false,
                };
                if step && self.add(&mut next, &mut marks, pc + 1, &text, pos + 1) {
                    return true;
                }
            }
            if next.is_empty() {
                return false;
            }
            current.clear();
            std::mem::swap(&mut current, &mut next);
        }
        false
    }
}
