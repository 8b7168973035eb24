//! Message-log metadata of signed messages.

use ndxp_audit::log::SignedMeta;
use ndxp_sign::profile::{SignedInfo, VerifiedMessage};

use super::NodeState;

/// The metadata of a message this node signed.
pub(crate) fn own_meta(state: &NodeState, info: &SignedInfo, content_digest: &str) -> SignedMeta {
    SignedMeta {
        signature_input: info.signature_input.clone(),
        signature: info.signature.clone(),
        content_digest: content_digest.to_owned(),
        base: info.base.clone(),
        signer_cert_der: state.own_cert_der.clone(),
        chain_der: state.own_chain_der.clone(),
    }
}

/// The metadata of a message this node verified.
pub(crate) fn verified_meta(vm: &VerifiedMessage) -> SignedMeta {
    SignedMeta {
        signature_input: vm.signature_input.clone(),
        signature: vm.signature.clone(),
        content_digest: vm.content_digest.clone(),
        base: vm.base.clone(),
        signer_cert_der: vm.signer_cert_der.clone(),
        chain_der: vm.chain_der.clone(),
    }
}
