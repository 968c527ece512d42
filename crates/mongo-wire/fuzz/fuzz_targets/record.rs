//! Stored-document decoding: arbitrary BSON bytes -> Document -> visits_core::Record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mongo_wire::bson::Document;
use visits_core::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = Document::from_reader(data) {
        if let Ok(r) = Record::from_document(&doc) {
            assert_eq!(Record::from_document(&r.to_document()), Ok(r));
        }
    }
});
