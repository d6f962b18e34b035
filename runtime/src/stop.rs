//! Stop strings: generated text ends at the first of them, even when one is split
//! across tokens. Text that could still begin a stop string is held back until it
//! cannot, so a streamed stop string is never half-printed.

/// Streams text up to the first stop string.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopStrings {
    /// Empty strings are ignored (they would stop at once).
    pub fn new(stops: &[String]) -> Self {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    /// Feeds newly decoded text; returns what can be shown now and whether a stop
    /// string has been reached (nothing after it is ever returned).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        if let Some(at) = self.first_stop(&self.held) {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest tail that is the start of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&k| s.is_char_boundary(k))
                    .map(move |k| &s[..k])
            })
            .filter(|p| self.held.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let emit = self.held.len() - keep;
        let out = self.held[..emit].to_string();
        self.held.drain(..emit);
        (out, false)
    }

    /// What is still held back, at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// `text` up to the first stop string.
    pub fn cut<'a>(&self, text: &'a str) -> &'a str {
        &text[..self.first_stop(text).unwrap_or(text.len())]
    }

    fn first_stop(&self, text: &str) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopStrings::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (shown, stopped) = s.push(p);
            out += &shown;
            if stopped {
                return (out, true);
            }
        }
        out += &s.finish();
        (out, false)
    }

    #[test]
    fn stops_across_token_boundaries() {
        assert_eq!(
            stream(&["\n\n"], &["a", "\n", "\n", "b"]),
            ("a".into(), true)
        );
        assert_eq!(stream(&["END"], &["xE", "N", "Dy"]), ("x".into(), true));
        // A near miss is released once it cannot be a stop string.
        assert_eq!(stream(&["END"], &["xE", "N", "o"]), ("xENo".into(), false));
        assert_eq!(stream(&["END"], &["xEN"]), ("xEN".into(), false));
        // The earliest of several wins; multi-byte text stays whole.
        assert_eq!(stream(&["ü!", "b"], &["aü", "!b"]), ("a".into(), true));
        assert_eq!(stream(&[""], &["abc"]), ("abc".into(), false));
        let s = StopStrings::new(&["--".into()]);
        assert_eq!(s.cut("ab--cd--"), "ab");
    }
}
