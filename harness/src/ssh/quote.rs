/// Quotes `s` as one word for a POSIX shell (the remote side of every command runs under the user's shell).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn plain_words_stay_as_they_are_and_the_rest_is_single_quoted() {
        assert_eq!(shell_quote("/etc/kubernetes/admin.kubeconfig"), "/etc/kubernetes/admin.kubeconfig");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
    }

    #[test]
    fn a_real_shell_reads_back_what_was_quoted() {
        for s in ["it's", "$(rm -rf /)", "a\nb", "\"x\" `y` \\z", "ünïcode *?[]"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
