//! Ballista codecs for dsproc's plan nodes. Each wraps Ballista's own codec and
//! handles our nodes first: a tagged JSON payload (`DSPROC1` + JSON), so the
//! node set is a closed enum rather than an order-sensitive codec list.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{internal_err, DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use dsproc_io::read::ReadSpec;
use dsproc_io::Location;

use crate::dup_ids::{DuplicateIdMode, DuplicateIdsExec, DuplicateIdsNode, DuplicateIdsPhase};
use crate::nodes::{KeysOf, ReadInputNode, StepStatsNode, WriteParams, WriteShardsNode};
use crate::read_exec::ReadInputExec;
use crate::shared::SharedNode;
use crate::stats_exec::StepStatsExec;
use crate::write_exec::WriteShardsExec;

const MAGIC: &[u8] = b"DSPROC1";

static DECODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many dsproc nodes (logical or physical) this process has decoded: a plan
/// that crossed a process boundary was decoded, one that ran locally was not.
pub fn decoded_nodes() -> usize {
    DECODED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Every dsproc node, logical or physical, as carried between processes.
#[derive(Debug, Serialize, Deserialize)]
enum NodeProto {
    Read {
        spec: ReadSpec,
        input_schema: String,
        staging: Location,
    },
    Stats {
        step: usize,
        op: String,
        staging: Location,
        sums_of: Option<String>,
        #[serde(default)]
        keys_of: Option<KeysOf>,
    },
    Write {
        params: WriteParams,
    },
    DuplicateIds {
        mode: DuplicateIdMode,
        phase: DuplicateIdsPhase,
        staging: Location,
    },
    /// A [`SharedNode`] (logical only: on a cluster it is planned as its input).
    Shared {
        id: u64,
    },
}

impl NodeProto {
    /// The proto of a dsproc logical node, `None` for other nodes.
    fn of_logical(node: &dyn std::any::Any) -> Option<Self> {
        if let Some(n) = node.downcast_ref::<ReadInputNode>() {
            return Some(Self::Read {
                spec: n.spec.clone(),
                input_schema: schema_hex(&n.input_schema),
                staging: n.staging.clone(),
            });
        }
        if let Some(n) = node.downcast_ref::<StepStatsNode>() {
            return Some(Self::Stats {
                step: n.step,
                op: n.op.clone(),
                staging: n.staging.clone(),
                sums_of: n.sums_of.clone(),
                keys_of: n.keys_of.clone(),
            });
        }
        if let Some(n) = node.downcast_ref::<DuplicateIdsNode>() {
            return Some(Self::DuplicateIds { mode: n.mode, phase: n.phase, staging: n.staging.clone() });
        }
        if let Some(n) = node.downcast_ref::<SharedNode>() {
            return Some(Self::Shared { id: n.id });
        }
        let n = node.downcast_ref::<WriteShardsNode>()?;
        Some(Self::Write { params: n.params.clone() })
    }

    /// The proto of a dsproc execution, `None` for other plans.
    fn of_physical(node: &dyn ExecutionPlan) -> Option<Self> {
        if let Some(n) = node.downcast_ref::<ReadInputExec>() {
            return Some(Self::Read {
                spec: n.spec.as_ref().clone(),
                input_schema: schema_hex(&n.input_schema),
                staging: n.staging.clone(),
            });
        }
        if let Some(n) = node.downcast_ref::<StepStatsExec>() {
            return Some(Self::Stats {
                step: n.step,
                op: n.op.clone(),
                staging: n.staging.clone(),
                sums_of: n.sums_of.clone(),
                keys_of: n.keys_of.clone(),
            });
        }
        if let Some(n) = node.downcast_ref::<DuplicateIdsExec>() {
            return Some(Self::DuplicateIds { mode: n.mode, phase: n.phase, staging: n.staging.clone() });
        }
        let n = node.downcast_ref::<WriteShardsExec>()?;
        Some(Self::Write { params: n.params.clone() })
    }

    fn into_logical(self, inputs: &[LogicalPlan]) -> Result<Arc<dyn datafusion::logical_expr::UserDefinedLogicalNode>> {
        let input = || -> Result<LogicalPlan> {
            inputs.first().cloned().ok_or_else(|| DataFusionError::Internal("dsproc node without input".into()))
        };
        Ok(match self {
            Self::Read { spec, input_schema, staging } => {
                Arc::new(ReadInputNode::try_new(spec, schema_from_hex(&input_schema)?, staging)?)
            }
            Self::Stats { step, op, staging, sums_of, keys_of } => {
                let mut n = StepStatsNode::with_sums(input()?, step, &op, staging.clone(), sums_of);
                if let Some(k) = keys_of {
                    n = StepStatsNode::with_keys(n.input, step, &op, staging, k);
                }
                Arc::new(n)
            }
            Self::Write { params } => Arc::new(WriteShardsNode::try_new(input()?, params)?),
            Self::DuplicateIds { mode, phase, staging } => {
                Arc::new(DuplicateIdsNode::try_new(input()?, mode, phase, staging)?)
            }
            Self::Shared { id } => Arc::new(SharedNode::with_id(input()?, id)),
        })
    }

    fn into_physical(self, inputs: &[Arc<dyn ExecutionPlan>]) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return internal_err!("dsproc exec with {} inputs, expected 1", inputs.len());
        };
        let input = Arc::clone(input);
        Ok(match self {
            Self::Read { spec, input_schema, staging } => {
                Arc::new(ReadInputExec::try_new(Arc::new(spec), schema_from_hex(&input_schema)?, staging, input)?)
            }
            Self::Stats { step, op, staging, sums_of, keys_of } => {
                Arc::new(StepStatsExec::new(input, step, op, staging).with_sums(sums_of).with_keys(keys_of))
            }
            Self::Write { params } => Arc::new(WriteShardsExec::new(input, params)),
            Self::DuplicateIds { mode, phase, staging } => Arc::new(DuplicateIdsExec::new(input, mode, phase, staging)),
            Self::Shared { .. } => return internal_err!("a shared subplan is not carried between processes"),
        })
    }
}

fn encode(node: &NodeProto, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MAGIC);
    serde_json::to_writer(buf, node).map_err(|e| DataFusionError::Internal(format!("encoding dsproc node: {e}")))
}

fn decode(buf: &[u8]) -> Option<Result<NodeProto>> {
    let body = buf.strip_prefix(MAGIC)?;
    DECODED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(serde_json::from_slice(body).map_err(|e| DataFusionError::Internal(format!("decoding dsproc node: {e}"))))
}

fn schema_hex(s: &SchemaRef) -> String {
    hex::encode(dsproc_io::schema::schema_to_bytes(s))
}

fn schema_from_hex(s: &str) -> Result<SchemaRef> {
    let bytes = hex::decode(s).map_err(|e| DataFusionError::Internal(format!("bad schema hex: {e}")))?;
    Ok(Arc::new(
        dsproc_io::schema::schema_from_bytes(&bytes)
            .map_err(|e| DataFusionError::Internal(dsproc_common::error::Chain(&e).to_string()))?,
    ))
}

/// Logical codec: dsproc nodes, then Ballista's.
#[derive(Debug, Default)]
pub struct DsprocLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for DsprocLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match decode(buf) {
            Some(node) => Ok(Extension { node: node?.into_logical(inputs)? }),
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match NodeProto::of_logical(node.node.as_any()) {
            Some(p) => encode(&p, buf),
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }
    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }
    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }
    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

/// Physical codec: dsproc execs, then Ballista's.
#[derive(Debug, Default)]
pub struct DsprocPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for DsprocPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match decode(buf) {
            Some(node) => node?.into_physical(inputs),
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match NodeProto::of_physical(node.as_ref()) {
            Some(p) => encode(&p, buf),
            None => self.inner.try_encode(node, buf, proto_converter),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }
}
