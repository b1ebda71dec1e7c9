//! The notebook's `.npy` gallery file: read what numpy wrote, write what numpy reads.

use embed_store::{Error, Gallery, Vectors, npy};
use test_support::{fixture, run_python};

#[test]
fn reads_the_file_numpy_wrote() {
    let g = npy::read_gallery(&fixture("notebook_small.npy")).unwrap();
    let expected = std::fs::read_to_string(fixture("notebook_small.txt")).unwrap();
    assert_eq!(g.len(), 6);
    assert_eq!(g.dim(), 8);
    for (i, line) in expected.lines().enumerate() {
        let mut parts = line.split(' ');
        assert_eq!(g.label(i), parts.next().unwrap());
        let row: Vec<f32> = parts.map(|x| x.parse::<f64>().unwrap() as f32).collect();
        assert_eq!(g.vectors().row(i), &row[..]);
    }
}

#[test]
fn numpy_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search_data.npy");
    let labels = vec![
        "id000_2".to_string(),
        "Ærøskøbing_é".into(),
        "random_0".into(),
    ];
    let data = vec![1.5, -2.0, 0.25, 3.0, 1e-3, -7.0];
    npy::write_gallery(
        &path,
        &Gallery::new(Vectors::new(2, data.clone()).unwrap(), labels.clone()).unwrap(),
    )
    .unwrap();
    let text = run_python("fixtures/scripts/check_npy_roundtrip.py", [&path]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "(3, 2) float64 <U12");
    assert_eq!(lines[1], labels.join(" "));
    let values: Vec<f32> = lines[2]
        .split(' ')
        .map(|x| x.parse::<f64>().unwrap() as f32)
        .collect();
    assert_eq!(values, data);
}

#[test]
fn every_truncation_is_a_clear_error() {
    let full = std::fs::read(fixture("notebook_small.npy")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.npy");
    for len in 0..full.len() {
        std::fs::write(&path, &full[..len]).unwrap();
        match npy::read_gallery(&path) {
            Err(Error::Format { message, .. }) => assert!(!message.is_empty()),
            other => panic!("a file cut to {len} of {} bytes gave {other:?}", full.len()),
        }
    }
}

#[test]
fn huge_claimed_shapes_are_rejected_before_allocating() {
    let full = std::fs::read(fixture("notebook_small.npy")).unwrap();
    let header_end = 10 + u16::from_le_bytes([full[8], full[9]]) as usize;
    let header = String::from_utf8(full[10..header_end].to_vec()).unwrap();
    assert!(header.contains("(6, 8)") && header.ends_with(" \n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.npy");
    for shape in [
        "(6000000000, 8)",
        "(99999999999999999999, 8)",
        "(4294967296, 4294967296)",
    ] {
        // Same header length: the longer shape eats into the space padding before the newline.
        let mut edited = header.replacen("(6, 8)", shape, 1);
        let extra = shape.len() - "(6, 8)".len();
        edited.replace_range(edited.len() - 1 - extra..edited.len() - 1, "");
        assert_eq!(edited.len(), header.len());
        let mut bytes = full.clone();
        bytes[10..header_end].copy_from_slice(edited.as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            matches!(npy::read_gallery(&path), Err(Error::Format { .. })),
            "shape {shape} was accepted"
        );
    }
}
