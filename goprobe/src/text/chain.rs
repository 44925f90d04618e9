//! Call stacks (function names, leaf first) shortened to the code a person recognises: the
//! program's frames that called into the Go runtime.

/// The first frame of `stack` outside package runtime (the code that called into it), else the
/// outermost frame.
pub fn caller_frame(stack: &[String]) -> &str {
    stack
        .iter()
        .find(|f| !f.starts_with("runtime."))
        .or(stack.last())
        .map_or("(no stack)", String::as_str)
}

/// The frames of `stack` outside package runtime, recursion collapsed, joined leaf first with
/// `←` (at most `max`): `main.build ← main.allocHeavy`.
pub fn caller_chain(stack: &[String], max: usize) -> String {
    let mut chain: Vec<&str> = Vec::new();
    for f in stack.iter().filter(|f| !f.starts_with("runtime.")) {
        if chain.last() != Some(&f.as_str()) {
            chain.push(f);
        }
    }
    if chain.is_empty() {
        return caller_frame(stack).to_owned();
    }
    chain.truncate(max);
    chain.join(" ← ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_first_frame_outside_runtime() {
        let s = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let stack = s(&[
            "runtime.stopTheWorld",
            "runtime.ReadMemStats",
            "main.f",
            "main.main",
        ]);
        assert_eq!(caller_frame(&stack), "main.f");
        assert_eq!(
            caller_frame(&s(&["runtime.a", "runtime.goexit"])),
            "runtime.goexit"
        );
        assert_eq!(caller_frame(&[]), "(no stack)");
        let rec = s(&[
            "runtime.gcAssistAlloc",
            "main.build",
            "main.build",
            "main.alloc",
            "main.main",
        ]);
        assert_eq!(caller_chain(&rec, 2), "main.build ← main.alloc");
        assert_eq!(caller_chain(&s(&["runtime.a"]), 2), "runtime.a");
    }
}
