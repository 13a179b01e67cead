//! Redis's glob patterns (`KEYS`, `SCAN MATCH`, `PSUBSCRIBE`): `*`, `?`, `[abc]`, `[^a]`,
//! `[a-z]` and `\` to escape, matched on bytes.

/// Whether `text` matches `pattern`. Backtracks on `*` only to the latest star, so the work is
/// at most the product of the two lengths.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the latest `*`: the pattern position after it, and the text
    // position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match step(pattern, p, text[t]) {
            Step::Star => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Step::Matched(next) => {
                p = next;
                t += 1;
                continue;
            }
            Step::Failed => {}
        }
        match star {
            Some((after, swallowed)) => {
                p = after;
                t = swallowed + 1;
                star = Some((after, swallowed + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

enum Step {
    Star,
    Matched(usize),
    Failed,
}

/// Matches one byte of text against the pattern at `p`.
fn step(pattern: &[u8], p: usize, byte: u8) -> Step {
    match pattern.get(p) {
        None => Step::Failed,
        Some(b'*') => Step::Star,
        Some(b'?') => Step::Matched(p + 1),
        Some(b'\\') if p + 1 < pattern.len() => {
            if pattern[p + 1] == byte {
                Step::Matched(p + 2)
            } else {
                Step::Failed
            }
        }
        Some(b'[') => class(pattern, p + 1, byte),
        Some(&literal) => {
            if literal == byte {
                Step::Matched(p + 1)
            } else {
                Step::Failed
            }
        }
    }
}

/// Matches `byte` against the class starting after `[` at `p`.
fn class(pattern: &[u8], mut p: usize, byte: u8) -> Step {
    let negated = pattern.get(p) == Some(&b'^');
    if negated {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (low, high) = (pattern[p].min(pattern[p + 2]), pattern[p].max(pattern[p + 2]));
            found |= (low..=high).contains(&byte);
            p += 3;
        } else {
            found |= pattern[p] == byte;
            p += 1;
        }
    }
    // An unclosed class matches as far as it goes, as Redis's does.
    let next = (p + 1).min(pattern.len());
    if found != negated { Step::Matched(next) } else { Step::Failed }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_in_redis() {
        let cases: [(&str, &str, bool); 14] = [
            ("*", "anything", true),
            ("*", "", true),
            ("sess:*", "sess:abc", true),
            ("sess:*", "sessx", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("__keyspace@0__:*", "__keyspace@0__:k", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern.as_bytes(), text.as_bytes()), expected, "{pattern} {text}");
        }
    }
}
