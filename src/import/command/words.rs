//! A knockd command as `sh -c` would split it into words, for the simple commands we translate:
//! quotes and backslashes are honoured; anything that makes it more than one command (`;`,
//! `&&`, pipes, redirections, substitutions) is refused with the reason.

use super::Unsupported;

pub fn split(command: &str) -> Result<Vec<String>, Unsupported> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted(&mut chars, '\'', &mut word)?,
            '"' => quoted(&mut chars, '"', &mut word)?,
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            '#' if !in_word => break,
            ';' | '&' | '|' | '<' | '>' | '`' | '$' | '(' | ')' => return Err(shell_line(c)),
            c => word.push(c),
        }
        in_word = true;
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The rest of a quoted string, up to `quote`.
fn quoted(chars: &mut std::str::Chars, quote: char, word: &mut String) -> Result<(), Unsupported> {
    loop {
        match chars.next() {
            Some(c) if c == quote => return Ok(()),
            Some(c @ ('$' | '`')) if quote == '"' => return Err(shell_line(c)),
            Some(c) => word.push(c),
            None => return Err(Unsupported::new(format!("has an unbalanced {quote} quote"))),
        }
    }
}

fn shell_line(c: char) -> Unsupported {
    Unsupported::new(format!(
        "is a shell command line ({c:?}); this import translates one iptables, ip6tables or nft \
         command"
    ))
}
