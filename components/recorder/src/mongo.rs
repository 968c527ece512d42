//! The MongoDB backend (placeholder until the mongo-wire client lands).

use visits_core::config::MongoSettings;
use visits_core::Record;

use crate::Store;

pub(crate) struct MongoStore;

impl MongoStore {
    pub(crate) fn connect(_settings: &MongoSettings) -> Result<Self, String> {
        Err("mongodb: backend not built yet".into())
    }
}

impl Store for MongoStore {
    fn insert(&mut self, _record: &Record) -> Result<(), String> {
        unreachable!()
    }
    fn latest(&mut self, _limit: usize) -> Result<Vec<Record>, String> {
        unreachable!()
    }
}
