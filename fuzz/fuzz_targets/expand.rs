//! Any word through the shell expander, with every option combination: never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rbuild_parser::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let mut env = BTreeMap::new();
    env.insert("PWD".to_string(), "/home".to_string());
    env.insert("EMPTY".to_string(), String::new());
    let mut lexer = Lexer::new(if flags & 1 == 0 { '\\' } else { '`' });
    lexer.raw_quotes = flags & 2 != 0;
    lexer.raw_escapes = flags & 4 != 0;
    lexer.skip_unset_env = flags & 8 != 0;
    lexer.skip_process_quotes = flags & 16 != 0;
    let _ = lexer.process_word(word, &env);
    let _ = lexer.process_words(word, &env);
    let _ = lexer.process_word_with_matches(word, &env);
});
