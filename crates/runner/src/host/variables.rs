//! `fermyon:spin/variables@2.0.0`: the component's own variables, resolved at startup.

use super::fermyon::spin::variables;
use super::State;

impl variables::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if spin_manifest::variables::validate_name(&name).is_err() {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(match self.comp.variables.get(&name) {
            Some(v) => Ok(v.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.comp.id
            ))),
        })
    }
}
