//! Shell patterns of `${v#p}`, `${v%p}` and `${v/p/r}`.
//!
//! BuildKit turns the pattern into a Go regular expression (`convertShellPatternToRegex`):
//! `*` becomes `.*` (or lazy `.*?`), `?` becomes `.`, everything else is literal, bracket
//! expressions included (`[` and `]` are escaped, so `[a-z]` only matches the text `[a-z]`).
//! Go's `.` does not match a newline, so neither `*` nor `?` ever crosses one.
//!
//! Such a regexp has no alternation and no groups, so its leftmost-first ("Perl") match can be
//! computed without a regex engine: the pattern is a list of fixed-width segments separated
//! by stars, and a right-to-left dynamic programme picks, for every star, the choice a
//! backtracking engine would try first (the longest for greedy stars, the shortest for lazy
//! ones) among those that lead to a match. That is linear in the value per segment.

use super::unicode::{is_digit, is_letter};

/// One single-character item of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Lit(char),
    /// `?`: any character but `\n`.
    Any,
}

impl Atom {
    fn matches(self, c: char) -> bool {
        match self {
            Atom::Lit(l) => l == c,
            Atom::Any => c != '\n',
        }
    }
}

/// A compiled pattern: `segments[0] * segments[1] * … * segments[k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Vec<Atom>>,
}

impl Pattern {
    /// Compiles a pattern the way `convertShellPatternToRegex` does. The escape character is
    /// always `\` here, whatever the lexer's escape token: `\*`, `\?` and `\\` are literals,
    /// `\}` and `\/` drop the backslash, any other escape is an error.
    fn parse(pattern: &str) -> Result<Self, String> {
        // Go's text/scanner drops a byte-order mark at the very start of its input.
        let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
        let mut segments = vec![Vec::new()];
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let atom = match c {
                '*' => {
                    segments.push(Vec::new());
                    continue;
                }
                '?' => Atom::Any,
                '\\' => {
                    if matches!(chars.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(e @ ('*' | '?' | '\\')) => Atom::Lit(e),
                        // Go formats the EOF rune with %c as U+FFFD.
                        other => {
                            return Err(format!(
                                "invalid escape '\\{}'",
                                other.unwrap_or(char::REPLACEMENT_CHARACTER)
                            ));
                        }
                    }
                }
                other => Atom::Lit(other),
            };
            if let Some(last) = segments.last_mut() {
                last.push(atom);
            }
        }
        Ok(Pattern { segments })
    }

    /// Prepares leftmost-first matching of this pattern in `hay`.
    fn matcher<'a>(&'a self, hay: &'a [char], greedy: bool) -> Matcher<'a> {
        let n = hay.len();
        // nl_end[p]: the first '\n' at or after p (or n); a star starting at p stops there.
        let mut nl_end = vec![n; n + 1];
        for p in (0..n).rev() {
            nl_end[p] = if hay[p] == '\n' { p } else { nl_end[p + 1] };
        }
        // ends[p]: where the whole match ends once segment i has been matched up to p
        // (None: the rest of the pattern cannot match from there). For the last segment
        // that is p itself; earlier rows are derived right to left.
        let mut ends: Vec<Option<usize>> = (0..=n).map(Some).collect();
        for seg in self.segments.iter().skip(1).rev() {
            let len = seg.len();
            // good[q]: this segment matches at q and the rest matches after it.
            let good: Vec<bool> = (0..=n)
                .map(|q| {
                    segment_matches(seg, hay, q) && ends.get(q + len).copied().flatten().is_some()
                })
                .collect();
            let mut next = vec![None; n + 1];
            if greedy {
                // The longest star: the last good q in [p, nl_end[p]].
                let mut last_good = vec![None; n + 1];
                let mut cur = None;
                for q in 0..=n {
                    if good[q] {
                        cur = Some(q);
                    }
                    last_good[q] = cur;
                }
                for p in 0..=n {
                    next[p] = last_good[nl_end[p]]
                        .filter(|&q| q >= p)
                        .and_then(|q| ends[q + len]);
                }
            } else {
                // The shortest star: the first good q in [p, nl_end[p]].
                let mut cur = None;
                for p in (0..=n).rev() {
                    if good[p] {
                        cur = Some(p);
                    }
                    next[p] = cur.filter(|&q| q <= nl_end[p]).and_then(|q| ends[q + len]);
                }
            }
            ends = next;
        }
        Matcher {
            first: self.segments.first().map(Vec::as_slice).unwrap_or(&[]),
            hay,
            ends,
        }
    }
}

fn segment_matches(seg: &[Atom], hay: &[char], at: usize) -> bool {
    hay.get(at..at.saturating_add(seg.len()))
        .is_some_and(|window| window.iter().zip(seg).all(|(&c, a)| a.matches(c)))
}

#[derive(Debug)]
struct Matcher<'a> {
    first: &'a [Atom],
    hay: &'a [char],
    ends: Vec<Option<usize>>,
}

impl Matcher<'_> {
    /// The leftmost-first match starting at `start`, as char indices `(start, end)`.
    fn match_at(&self, start: usize) -> Option<(usize, usize)> {
        if !segment_matches(self.first, self.hay, start) {
            return None;
        }
        let end = self.ends.get(start + self.first.len()).copied().flatten()?;
        Some((start, end))
    }

    /// Like Go's unanchored search from char index `from`.
    fn find_from(&self, from: usize) -> Option<(usize, usize)> {
        (from..=self.hay.len()).find_map(|s| self.match_at(s))
    }
}

fn invalid(pattern: &str, err: &str) -> String {
    format!("invalid pattern ({pattern}) in substitution: {err}")
}

/// `${v#p}` / `${v##p}` (BuildKit's `trimPrefix`).
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let compiled = Pattern::parse(pattern).map_err(|e| invalid(pattern, &e))?;
    let hay: Vec<char> = value.chars().collect();
    Ok(match compiled.matcher(&hay, greedy).match_at(0) {
        Some((_, end)) => hay[end..].iter().collect(),
        None => value.to_owned(),
    })
}

/// `${v%p}` / `${v%%p}` (BuildKit's `trimSuffix`): reverses pattern and value and trims a
/// prefix, so an invalid pattern is reported reversed, as BuildKit does.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape pair in order (`a\*c` → `c\*a`).
/// A lone `\` at the end counts as a plain character.
pub(super) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + len]);
        i += len;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

/// `${v/p/r}` and `${v//p/r}`. Stars are greedy. Replacing the first match inserts the
/// replacement literally; replacing all goes through Go's `Regexp.ReplaceAllString`, whose
/// replacement is a template (`$0`/`${0}` is the match, `$$` is `$`, other names are empty).
pub(super) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let compiled = Pattern::parse(pattern).map_err(|e| invalid(pattern, &e))?;
    let hay: Vec<char> = value.chars().collect();
    let matcher = compiled.matcher(&hay, true);
    let slice = |a: usize, b: usize| hay[a..b].iter().collect::<String>();
    if !all {
        return Ok(match matcher.find_from(0) {
            Some((a, b)) => format!("{}{replacement}{}", slice(0, a), slice(b, hay.len())),
            None => value.to_owned(),
        });
    }
    let mut out = String::with_capacity(value.len());
    let (mut last_end, mut search) = (0, 0);
    while search <= hay.len() {
        let Some((a, b)) = matcher.find_from(search) else {
            break;
        };
        out.push_str(&slice(last_end, a));
        // No replacement for an empty match right after the previous match.
        if b > last_end || a == 0 {
            expand_template(&mut out, replacement, &slice(a, b));
        }
        last_end = b;
        search = if search + 1 > b { search + 1 } else { b };
    }
    out.push_str(&slice(last_end, hay.len()));
    Ok(out)
}

/// Go's `Regexp.Expand` for a regexp whose only group is the whole match.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_ref(rest) {
            Some((num, after)) => {
                if num == Some(0) {
                    out.push_str(whole);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's `extract`: parses `name` or `{name}` after a `$`. Returns the group number (None for
/// a name that is not a plain number) and the text after the reference.
fn template_ref(s: &str) -> Option<(Option<u32>, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let mut after = &body[len..];
    if braced {
        after = after.strip_prefix('}')?;
    }
    let mut num: Option<u32> = Some(0);
    for b in name.bytes() {
        num = match num {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => Some(n * 10 + u32::from(b - b'0')),
            _ => None,
        };
    }
    if name.len() > 1 && name.starts_with('0') {
        num = None;
    }
    Some((num, after))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        for (input, expected) in [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
        ] {
            assert_eq!(reverse_pattern(input), expected, "{input}");
        }
    }

    #[test]
    fn pattern_escapes() {
        // The regexp-special characters are all literal.
        let p = Pattern::parse("(()[]{\\}^$.\\*\\?|\\\\").unwrap();
        let lits: String = p.segments[0]
            .iter()
            .map(|a| match a {
                Atom::Lit(c) => *c,
                Atom::Any => '?',
            })
            .collect();
        assert_eq!(p.segments.len(), 1);
        assert_eq!(lits, "(()[]{}^$.*?|\\");
        for bad in ["\\", "\\x", "\\\\\\"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Pattern::parse("\\x").unwrap_err(), "invalid escape '\\x'");
        assert_eq!(
            Pattern::parse("\\").unwrap_err(),
            "invalid escape '\\\u{fffd}'"
        );
    }

    #[test]
    fn greedy_and_lazy() {
        assert_eq!(trim_prefix("*x", "xxyy", false).unwrap(), "xyy");
        assert_eq!(trim_prefix("*x", "xxyy", true).unwrap(), "yy");
        assert_eq!(trim_prefix("*", "xxyy", false).unwrap(), "xxyy");
        assert_eq!(trim_prefix("*", "xxyy", true).unwrap(), "");
        assert_eq!(trim_suffix("y*", "xxyy", false).unwrap(), "xxy");
        assert_eq!(trim_suffix("y*", "xxyy", true).unwrap(), "xx");
        assert_eq!(trim_prefix("[ab]", "axx", true).unwrap(), "axx");
        assert_eq!(trim_prefix("[ab]", "[ab]x", true).unwrap(), "x");
    }

    #[test]
    fn stars_do_not_cross_newlines() {
        assert_eq!(trim_prefix("*", "ab\ncd", true).unwrap(), "\ncd");
        assert_eq!(trim_prefix("a?c", "a\nc!", true).unwrap(), "a\nc!");
        assert_eq!(trim_prefix("*x*y", "x\nxy!", true).unwrap(), "x\nxy!");
        assert_eq!(replace("x*y", "x\nxy", "Z", false).unwrap(), "x\nZ");
    }

    #[test]
    fn replace_all_like_go() {
        assert_eq!(replace("", "xxyy", "ww", false).unwrap(), "wwxxyy");
        assert_eq!(replace("", "ab", "-", true).unwrap(), "-a-b-");
        assert_eq!(replace("*", "ab", "-", true).unwrap(), "-");
        assert_eq!(replace("x*", "axxb", "-", true).unwrap(), "a-");
        assert_eq!(replace("o", "foo", "[$0]", true).unwrap(), "f[o][o]");
        assert_eq!(
            replace("o", "foo", "${0}$$ $1 $x ${x} $. ${", true).unwrap(),
            "fo$    $. ${o$    $. ${"
        );
        assert_eq!(replace("o", "foo", "$0", false).unwrap(), "f$0o");
    }
}
