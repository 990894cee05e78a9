//! Redis's glob patterns (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), matched in memory the way
//! `SCAN MATCH` matches them in Redis, so a pattern deletes the same keys on every strategy.

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(p, pi, t[ti])
                        && ok
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                b'\\' if pi + 1 < p.len() => {}
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class opening at `p[start]`; returns whether it matched and
/// where the pattern goes on. An unclosed class runs to the pattern's end, as in Redis.
fn class(p: &[u8], start: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < p.len() && p[i] != b']' {
        if p[i] == b'\\' && i + 1 < p.len() {
            hit |= p[i + 1] == byte;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == b'-' {
            // As Redis reads it: `[a-]` is the range from `a` to `]`.
            let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
            hit |= (lo..=hi).contains(&byte);
            i += 3;
        } else {
            hit |= p[i] == byte;
            i += 1;
        }
    }
    let next = if i < p.len() { i + 1 } else { i };
    Some((hit != negate, next))
}

/// `literal` with every glob character escaped, to prefix a pattern.
pub fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_in_redis() {
        let cases = [
            ("*", "", true),
            ("user:*", "user:1", true),
            ("user:*", "users:1", false),
            ("u?er:*", "user:", true),
            ("*:profile", "user:7:profile", true),
            ("*:profile", "user:7:profiles", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("h[ae]llo", "hello", true),
            ("h[^e]llo", "hello", false),
            ("h[^e]llo", "hallo", true),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("\\*x", "*x", true),
            ("\\*x", "ax", false),
            ("k[\\]]", "k]", true),
            ("a[a-]", "a]", true),
            ("a[a-]", "a^", true),
            ("a[a-]", "a-", false),
            ("[]a]", "]a]", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn an_escaped_literal_matches_only_itself() {
        let literal = "we*ird?[k]\\";
        let pattern = format!("{}*", escape(literal));
        assert!(matches(&pattern, &format!("{literal}tail")));
        assert!(!matches(&pattern, "weXird?[k]\\tail"));
    }
}
