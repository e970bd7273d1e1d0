//! (stub) parse
use super::*;
pub fn load(_paths: &[PathBuf]) -> anyhow::Result<Spec> {
    unimplemented!()
}
pub fn load_str(_name: &str, _text: &str) -> anyhow::Result<Spec> {
    unimplemented!()
}
