//! C2SP tile paths, partial tiles and entry bundles.

use attestlog::tlog::tiles::{
    checkpoint_tiles, encode_entry_bundle, encode_index, entry_bundle_for_leaf, parse_entry_bundle,
    tile_for_leaf, tiles_for_size, TileKind, TilePath,
};
use proptest::prelude::*;

#[test]
fn formats_md_examples() {
    assert_eq!(encode_index(5), "005");
    assert_eq!(encode_index(1000), "x001/000");
    assert_eq!(encode_index(1234067), "x001/x234/067");
    assert_eq!(encode_index(0), "000");
    assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    let paths: Vec<String> = checkpoint_tiles(70_000)
        .iter()
        .map(TilePath::to_path)
        .collect();
    assert_eq!(
        paths,
        ["tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1"]
    );
    assert_eq!(tiles_for_size(70_000).len(), 3);
    let paths: Vec<String> = checkpoint_tiles(256)
        .iter()
        .map(TilePath::to_path)
        .collect();
    assert_eq!(paths, ["tile/1/000.p/1"]);
    assert!(checkpoint_tiles(0).is_empty());
    let t = TilePath::parse("tile/0/x001/234.p/5").unwrap();
    assert_eq!(
        t,
        TilePath {
            kind: TileKind::Hashes { level: 0 },
            index: 1234,
            width: Some(5)
        }
    );
    let t = TilePath::parse("tile/entries/x001/x234/067").unwrap();
    assert_eq!(
        t,
        TilePath {
            kind: TileKind::Entries,
            index: 1234067,
            width: None
        }
    );
    assert_eq!(
        TilePath::parse("tile/63/000").unwrap().kind,
        TileKind::Hashes { level: 63 }
    );
}

#[test]
fn non_canonical_paths_rejected() {
    for bad in [
        "/tile/0/000",
        "tile/0/000/",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/5",
        "tile/0/0005",
        "tile/0/x000/005",
        "tile/0/001/002",
        "tile/0/x001",
        "tile/0/x1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/05",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/1/2",
        "tile/data/000",
        "tile/8/0/000",
        "tile/entries/000.p/300",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/abc",
        "tile/0/",
        "tile/",
        "",
        "xtile/0/000",
        "tile/0/000 ",
        "tile/0/+01",
        "tile/0/x01a/000",
    ] {
        assert!(TilePath::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        TilePath::parse("tile/0/000.p/256").unwrap_err().code(),
        "tile_width_out_of_range"
    );
    assert_eq!(
        TilePath::parse("tile/64/000").unwrap_err().code(),
        "tile_level_out_of_range"
    );
    assert_eq!(
        TilePath::parse("tile/0/x000/005").unwrap_err().code(),
        "non_canonical_tile_path"
    );
    assert_eq!(
        TilePath::parse("tile/0/x018/x446/x744/x073/x709/x551/616")
            .unwrap_err()
            .code(),
        "tile_index_overflow"
    );
}

#[test]
fn leaf_tiles() {
    let (t, off) = tile_for_leaf(70_000 - 1, 70_000).unwrap();
    assert_eq!((t.to_path(), off), ("tile/0/273.p/112".to_owned(), 111));
    let (t, off) = tile_for_leaf(300, 70_000).unwrap();
    assert_eq!((t.to_path(), off), ("tile/0/001".to_owned(), 44));
    let (t, _) = entry_bundle_for_leaf(300, 512).unwrap();
    assert_eq!(t.to_path(), "tile/entries/001");
    assert!(tile_for_leaf(5, 5).is_none());
}

#[test]
fn entry_bundles() {
    assert_eq!(parse_entry_bundle(&[]).unwrap(), Vec::<&[u8]>::new());
    let b = encode_entry_bundle(&[b"", b"abc", &[0u8; 300]]).unwrap();
    assert_eq!(&b[..7], &[0, 0, 0, 3, b'a', b'b', b'c']);
    let e = parse_entry_bundle(&b).unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(e[2].len(), 300);
    assert_eq!(
        parse_entry_bundle(&[0]).unwrap_err().code(),
        "truncated_entry_bundle"
    );
    assert_eq!(
        parse_entry_bundle(&[0, 2, 1]).unwrap_err().code(),
        "truncated_entry_bundle"
    );
    assert_eq!(
        encode_entry_bundle(&[&vec![0u8; 65_536]])
            .unwrap_err()
            .code(),
        "entry_too_large"
    );
    encode_entry_bundle(&[&vec![0u8; 65_535]]).unwrap();
    let many: Vec<&[u8]> = vec![b"x"; 257];
    assert_eq!(
        encode_entry_bundle(&many).unwrap_err().code(),
        "too_many_entries"
    );
    let mut raw = Vec::new();
    for _ in 0..257 {
        raw.extend_from_slice(&[0, 0]);
    }
    assert_eq!(
        parse_entry_bundle(&raw).unwrap_err().code(),
        "too_many_entries"
    );
}

proptest! {
    #[test]
    fn prop_tile_path_roundtrip(level in 0u8..=63, index in any::<u64>(), w in 0u16..256, entries in any::<bool>()) {
        let kind = if entries { TileKind::Entries } else { TileKind::Hashes { level } };
        let width = if w == 0 { None } else { Some(w) };
        let t = TilePath { kind, index, width };
        prop_assert!(t.validate().is_ok());
        prop_assert_eq!(TilePath::parse(&t.to_path()).unwrap(), t);
    }

    #[test]
    fn prop_checkpoint_tiles_widths(size in any::<u64>()) {
        let mut q = size;
        let tiles = checkpoint_tiles(size);
        let mut level = 0u8;
        let mut it = tiles.iter();
        while q > 0 {
            let w = q % 256;
            q /= 256;
            if w > 0 {
                let t = it.next().unwrap();
                prop_assert_eq!(t.kind, TileKind::Hashes { level });
                prop_assert_eq!((t.index, t.width), (q, Some(w as u16)));
            }
            level += 1;
        }
        prop_assert!(it.next().is_none());
    }

    #[test]
    fn prop_entry_bundle_roundtrip(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let b = encode_entry_bundle(&refs).unwrap();
        prop_assert_eq!(parse_entry_bundle(&b).unwrap(), refs);
        if !b.is_empty() {
            // Any strict truncation that cuts an entry fails, never panics.
            let cut = b.len() - 1;
            prop_assert!(parse_entry_bundle(&b[..cut]).is_err() || entries.last().is_some_and(|e| e.is_empty()));
        }
    }
}
