//! Stop sequences: generation ends where the text spells out one of them (a
//! chat model writing a turn marker as plain characters, a base model starting
//! its prompt over), and the stop text never reaches the client. Text that
//! could be the start of a stop sequence is held back until it is known not
//! to be one.

/// Watches generated text for stop sequences.
#[derive(Debug, Default)]
pub(super) struct StopWatch {
    stops: Vec<String>,
    held: String,
}

/// What a new piece of text means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Text that may be released now (maybe empty).
    Text(String),
    /// A stop sequence: release this text before it, then end.
    Stop(String),
}

impl StopWatch {
    pub(super) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds generated text.
    pub(super) fn push(&mut self, text: &str) -> Seen {
        if self.stops.is_empty() {
            return Seen::Text(text.to_owned());
        }
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let before = self.held[..at].to_owned();
            self.held.clear();
            return Seen::Stop(before);
        }
        // Keep the longest tail that is a prefix of some stop sequence.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_owned();
        self.held.drain(..keep);
        Seen::Text(out)
    }

    /// The held-back text at the end of a generation that ended otherwise.
    pub(super) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> StopWatch {
        StopWatch::new(&["<|im_start|>".into(), "The following is".into()])
    }

    #[test]
    fn stops_at_a_sequence_split_over_pieces_and_drops_it() {
        let mut w = watch();
        assert_eq!(w.push("He left."), Seen::Text("He left.".into()));
        assert_eq!(w.push(" <|im"), Seen::Text(" ".into()));
        assert_eq!(w.push("_start|>user"), Seen::Stop(String::new()));
    }

    #[test]
    fn releases_held_text_that_turns_out_harmless() {
        let mut w = watch();
        assert_eq!(w.push("a <"), Seen::Text("a ".into()));
        assert_eq!(w.push("b"), Seen::Text("<b".into()));
        assert_eq!(w.push(" The follow"), Seen::Text(" ".into()));
        assert_eq!(w.finish(), "The follow");
    }

    #[test]
    fn no_stops_passes_everything() {
        let mut w = StopWatch::new(&[]);
        assert_eq!(w.push("<|im_start|>"), Seen::Text("<|im_start|>".into()));
    }
}
