//! Property tests: round trips for every type, generated manifests parse
//! back to the same digest, and near-miss inputs are rejected with the right
//! error code without panicking.

#![allow(clippy::unwrap_used)]
use bytes::Bytes;
use proptest::prelude::*;
use wharf_types::strategies::*;
use wharf_types::{
    Digest, Digester, ErrorCode, Manifest, ManifestKind, MediaType, OciError, Reference,
    RepositoryName, Tag, UploadId,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn digest_round_trips(d in arb_digest()) {
        prop_assert_eq!(Digest::parse(d.as_ref()).unwrap(), d.clone());
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn name_round_trips(n in arb_repository_name()) {
        prop_assert_eq!(RepositoryName::parse(n.as_str()).unwrap(), n.clone());
        prop_assert!(n.as_str().len() <= RepositoryName::MAX_LEN);
    }

    #[test]
    fn tag_round_trips(t in arb_tag()) {
        prop_assert_eq!(Tag::parse(t.as_ref()).unwrap(), t);
    }

    #[test]
    fn reference_round_trips(r in arb_reference()) {
        prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn upload_id_round_trips(u in arb_upload_id()) {
        prop_assert_eq!(UploadId::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn media_type_round_trips(m in arb_media_type()) {
        prop_assert_eq!(MediaType::parse(m.as_str()).unwrap(), m);
    }

    #[test]
    fn invalid_digests_are_rejected(s in arb_invalid_digest()) {
        let err = Digest::parse(&s).unwrap_err();
        prop_assert_eq!(err.code(), ErrorCode::DigestInvalid);
        // As a manifest reference, a string with ':' is always judged as a digest.
        let r = Reference::parse(&s);
        if s.contains(':') {
            prop_assert_eq!(r.unwrap_err().code(), ErrorCode::DigestInvalid);
        }
    }

    #[test]
    fn invalid_names_are_rejected(s in arb_invalid_repository_name()) {
        prop_assert_eq!(RepositoryName::parse(&s).unwrap_err().code(), ErrorCode::NameInvalid);
    }

    #[test]
    fn invalid_tags_are_rejected(s in arb_invalid_tag()) {
        prop_assert_eq!(Tag::parse(&s).unwrap_err().code(), ErrorCode::TagInvalid);
    }

    #[test]
    fn generated_manifests_parse_back_identically(m in arb_manifest()) {
        let again = Manifest::parse(m.raw().clone(), Some(m.media_type().as_str())).unwrap();
        prop_assert_eq!(again.digest(), m.digest());
        prop_assert_eq!(again.digest(), &Digest::sha256(m.raw()));
        prop_assert_eq!(again.layers(), m.layers());
        prop_assert_eq!(again.config(), m.config());
        prop_assert_eq!(again.subject(), m.subject());
        prop_assert!(!again.kind().is_index());
        // The oci-spec model reads the same document.
        let oci = m.to_oci_image_manifest().unwrap();
        prop_assert_eq!(oci.layers().len(), m.layers().len());
    }

    #[test]
    fn generated_indexes_parse_back_identically(m in arb_index()) {
        let again = Manifest::parse(m.raw().clone(), None).unwrap();
        prop_assert_eq!(again.digest(), m.digest());
        prop_assert_eq!(again.manifests(), m.manifests());
        prop_assert!(matches!(again.kind(), ManifestKind::OciIndex | ManifestKind::DockerManifestList));
    }

    #[test]
    fn oci_spec_serialized_manifests_parse(m in arb_manifest()) {
        // A document produced by another implementation's serializer.
        let Some(oci) = m.to_oci_image_manifest() else { return Ok(()); };
        let raw = Bytes::from(serde_json::to_vec(&oci).unwrap());
        let parsed = Manifest::parse(raw.clone(), None).unwrap();
        prop_assert_eq!(parsed.digest(), &Digest::sha256(&raw));
        prop_assert_eq!(parsed.layers().len(), m.layers().len());
    }

    #[test]
    fn invalid_manifests_are_rejected(raw in arb_invalid_manifest()) {
        let err = Manifest::parse(raw, None).unwrap_err();
        prop_assert!(matches!(err.code(), ErrorCode::ManifestInvalid | ErrorCode::Unsupported), "{err}");
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of("\\PC{0,40}")) {
        let _ = Manifest::parse(Bytes::from(raw.clone()), ct.as_deref());
        let s = String::from_utf8_lossy(&raw);
        let _ = Digest::parse(&s);
        let _ = RepositoryName::parse(&s);
        let _ = Reference::parse(&s);
        let _ = UploadId::parse(&s);
        let _ = MediaType::from_content_type(&s);
    }

    #[test]
    fn chunking_does_not_change_the_digest(data in proptest::collection::vec(any::<u8>(), 0..4096), cut in 1usize..512) {
        let mut d = Digester::new(wharf_types::Algorithm::Sha256);
        for chunk in data.chunks(cut) {
            d.update(chunk);
        }
        prop_assert_eq!(d.finish(), Digest::sha256(&data));
    }
}
