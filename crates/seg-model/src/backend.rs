//! Which burn device runs the model: picked at run time among the backends compiled in.
//!
//! `flex` (default feature) is burn's pure-Rust CPU backend; `tch` links libtorch (CPU or CUDA).

use burn::tensor::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, SegError};

/// The compute backend and device a model runs on; written as its name (`flex`, `tch-cpu`,
/// `tch-cuda:N`) in configuration files, where a backend this build lacks is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-flex, pure Rust CPU (rayon + SIMD).
    #[cfg(feature = "flex")]
    Flex,
    /// libtorch on the CPU.
    #[cfg(feature = "tch")]
    TchCpu,
    /// libtorch on a CUDA GPU with this index.
    #[cfg(feature = "tch")]
    TchCuda(usize),
}

impl BackendKind {
    /// The backend used when none is asked for: flex when compiled in, else libtorch CPU.
    pub fn default_kind() -> Self {
        #[cfg(feature = "flex")]
        {
            Self::Flex
        }
        #[cfg(all(not(feature = "flex"), feature = "tch"))]
        {
            Self::TchCpu
        }
    }

    /// Names accepted by [`BackendKind::parse`] in this build.
    pub fn available() -> Vec<&'static str> {
        [
            #[cfg(feature = "flex")]
            &["flex"][..],
            #[cfg(feature = "tch")]
            &["tch", "tch-cuda", "tch-cuda:N"][..],
        ]
        .concat()
    }

    /// Parses `flex`, `tch` (= `tch-cpu`), `tch-cuda` or `tch-cuda:N`.
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            #[cfg(feature = "flex")]
            "flex" | "cpu" => return Ok(Self::Flex),
            #[cfg(feature = "tch")]
            "tch" | "tch-cpu" | "libtorch" => return Ok(Self::TchCpu),
            #[cfg(feature = "tch")]
            "tch-cuda" | "cuda" => return Ok(Self::TchCuda(0)),
            _ => {}
        }
        #[cfg(feature = "tch")]
        if let Some(index) = name.strip_prefix("tch-cuda:")
            && let Ok(index) = index.parse()
        {
            return Ok(Self::TchCuda(index));
        }
        Err(SegError::invalid(
            "backend",
            format!("{name:?}"),
            format!(
                "unknown backend {name:?}; this build offers: {} (build with `--features tch` for libtorch)",
                Self::available().join(", ")
            ),
        ))
    }

    /// The burn device for this backend, without autodiff (inference).
    #[allow(deprecated)] // burn marks burn-tch deprecated; the user asked for libtorch.
    pub fn device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => Device::flex(),
            #[cfg(feature = "tch")]
            Self::TchCpu => Device::libtorch(),
            #[cfg(feature = "tch")]
            Self::TchCuda(index) => Device::libtorch_cuda(index),
        }
    }

    /// The same device with autodiff, for training.
    pub fn training_device(self) -> Device {
        self.device().autodiff()
    }
}

impl Serialize for BackendKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackendKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).map_err(|e| match e {
            SegError::InvalidValue { allowed, .. } => serde::de::Error::custom(allowed),
            other => serde::de::Error::custom(other),
        })
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => write!(f, "flex"),
            #[cfg(feature = "tch")]
            Self::TchCpu => write!(f, "tch-cpu"),
            #[cfg(feature = "tch")]
            Self::TchCuda(i) => write!(f, "tch-cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_and_rejects_unknown() {
        let kind = BackendKind::parse(&BackendKind::default_kind().to_string()).expect("parse");
        assert_eq!(kind, BackendKind::default_kind());
        let err = BackendKind::parse("quantum").expect_err("unknown backend");
        assert!(err.to_string().contains("quantum"), "{err}");
        let kind: BackendKind =
            serde_json::from_str(&serde_json::to_string(&kind).expect("ser")).expect("de");
        assert_eq!(kind, BackendKind::default_kind());
        let err = serde_json::from_str::<BackendKind>("\"quantum\"").expect_err("refused");
        assert!(err.to_string().contains("this build offers"), "{err}");
    }
}
