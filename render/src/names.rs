//! From AutoCircuit's node names to the nodes of the picture: which box a name is drawn in
//! (`A1.2.Q`, `A1.2.K`, `A1.2.V` and the source `A1.2` are one box, spec 7.1) and in which
//! layer that box sits (0 = Embed, 2b+1 = heads of block b, 2b+2 = MLP b, last = Unembed).

/// A box of the picture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Graph layer; `Unembed` is given `usize::MAX` here and resolved by [`Layers::of`].
    pub layer: usize,
    /// Order inside the layer: the head index, else 0.
    pub rank: usize,
    /// The display name.
    pub name: String,
}

/// The picture's box for a source or destination name.
pub fn node_key(name: &str) -> NodeKey {
    if name == "Resid Start" {
        return key(0, 0, "Embed");
    }
    if name == "Resid End" {
        return key(usize::MAX, 0, "Unembed");
    }
    if let Some(rest) = name.strip_prefix("MLP ") {
        if let Ok(b) = rest.parse::<usize>() {
            return key(2 * b + 2, 0, name);
        }
    }
    if let Some(rest) = name.strip_prefix('A') {
        let mut parts = rest.split('.');
        let (b, h, qkv) = (parts.next(), parts.next(), parts.next());
        let qkv_ok = matches!(qkv, None | Some("Q" | "K" | "V")) && parts.next().is_none();
        if let (Some(Ok(b)), Some(Ok(h)), true) = (
            b.map(str::parse::<usize>),
            h.map(str::parse::<usize>),
            qkv_ok,
        ) {
            return key(2 * b + 1, h, &format!("A{b}.{h}"));
        }
    }
    // Not an AutoCircuit name (a newer model family?): draw it in the last layer rather than
    // lose the edge; its name says what it is.
    key(usize::MAX, 1, name)
}

fn key(layer: usize, rank: usize, name: &str) -> NodeKey {
    NodeKey {
        layer,
        rank,
        name: name.to_string(),
    }
}

/// The layers of one picture: `n` = graph layers including Embed and Unembed.
#[derive(Debug, Clone, Copy)]
pub struct Layers {
    pub n: usize,
}

impl Layers {
    /// `2 * n_layers + 2` layers, widened if a name mentions a block past `n_layers` (a scores
    /// file whose model record disagrees with its edges is still drawn).
    pub fn new(n_layers: usize, keys: impl IntoIterator<Item = usize>) -> Self {
        let max_seen = keys.into_iter().filter(|&l| l != usize::MAX).max();
        let n = (2 * n_layers + 2).max(max_seen.map_or(0, |m| m + 2));
        Layers { n }
    }

    /// The layer index of a key (Unembed and unknown names: the last layer).
    pub fn of(&self, key: &NodeKey) -> usize {
        key.layer.min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_merge_and_layer_as_autocircuit_does() {
        let k = |n: &str| {
            let k = node_key(n);
            (k.layer, k.name)
        };
        assert_eq!(k("Resid Start"), (0, "Embed".into()));
        assert_eq!(k("A1.2.K"), (3, "A1.2".into()));
        assert_eq!(k("A1.2"), (3, "A1.2".into()));
        assert_eq!(k("A11.11.V"), (23, "A11.11".into()));
        assert_eq!(k("MLP 0"), (2, "MLP 0".into()));
        assert_eq!(k("MLP 11"), (24, "MLP 11".into()));
        let layers = Layers::new(12, [0, 23]);
        assert_eq!(layers.n, 26);
        assert_eq!(layers.of(&node_key("Resid End")), 25);
        assert_eq!(layers.of(&node_key("Alpha")), 25);
        assert_eq!(Layers::new(1, [5]).n, 7);
    }
}
