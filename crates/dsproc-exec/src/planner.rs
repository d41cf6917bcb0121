//! Logical → physical for dsproc's nodes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DataFusionError;
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use dsproc_common::config::SHARD_COLUMN;

use crate::dup_ids::{DuplicateIdsExec, DuplicateIdsNode};
use crate::nodes::{ReadInputNode, StepStatsNode, WriteShardsNode};
use crate::read_exec::ReadInputExec;
use crate::shared::{ShareSubplans, SharedNode, SharedPlans};
use crate::stats_exec::StepStatsExec;
use crate::write_exec::WriteShardsExec;

/// Plans [`ReadInputNode`], [`StepStatsNode`], [`WriteShardsNode`] and
/// [`SharedNode`]. One per physical planning pass (it holds the pass's shared
/// subplans).
#[derive(Debug, Default)]
pub struct DsprocExtensionPlanner {
    shared: SharedPlans,
}

#[async_trait]
impl ExtensionPlanner for DsprocExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let partitions = session.config().target_partitions();
        if let Some(n) = node.as_any().downcast_ref::<ReadInputNode>() {
            let exec =
                ReadInputExec::try_plan(n.spec.clone(), Arc::clone(&n.input_schema), n.staging.clone(), partitions)?;
            return Ok(Some(Arc::new(exec)));
        }
        if let Some(n) = node.as_any().downcast_ref::<SharedNode>() {
            let input = Arc::clone(&physical_inputs[0]);
            // Only plans that run in one process share (see crate::shared).
            if session.config().get_extension::<ShareSubplans>().is_none() {
                return Ok(Some(input));
            }
            let exec = self.shared.reader(n, logical_inputs[0], || optimized(input, session))?;
            return Ok(Some(Arc::new(exec)));
        }
        if let Some(n) = node.as_any().downcast_ref::<StepStatsNode>() {
            let input = Arc::clone(&physical_inputs[0]);
            let exec = StepStatsExec::new(input, n.step, n.op.clone(), n.staging.clone())
                .with_sums(n.sums_of.clone())
                .with_keys(n.keys_of.clone());
            return Ok(Some(Arc::new(exec)));
        }
        if let Some(n) = node.as_any().downcast_ref::<DuplicateIdsNode>() {
            let input = Arc::clone(&physical_inputs[0]);
            return Ok(Some(Arc::new(DuplicateIdsExec::new(input, n.mode, n.phase, n.staging.clone()))));
        }
        if let Some(n) = node.as_any().downcast_ref::<WriteShardsNode>() {
            let input = Arc::clone(&physical_inputs[0]);
            let schema = input.schema();
            let repartitioned: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
                input,
                Partitioning::Hash(vec![col(SHARD_COLUMN, &schema)?], partitions),
            )?);
            let requirement = WriteShardsExec::sort_requirement(&schema)?;
            let ordering = LexOrdering::new(requirement.iter().map(|r| PhysicalSortExpr::from(r.clone())))
                .ok_or_else(|| DataFusionError::Internal("empty ordering".into()))?;
            let sorted = Arc::new(SortExec::new(ordering, repartitioned).with_preserve_partitioning(true));
            return Ok(Some(Arc::new(WriteShardsExec::new(sorted, n.params.clone()))));
        }
        Ok(None)
    }
}

/// `plan` through the session's physical optimizer rules (a shared subplan is a
/// leaf's inside: the rules that run over the whole plan do not see it).
fn optimized(plan: Arc<dyn ExecutionPlan>, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
    let options = session.config_options();
    session.physical_optimizers().iter().try_fold(plan, |plan, rule| rule.optimize(plan, options))
}

/// The default physical planner plus [`DsprocExtensionPlanner`]. Install it on
/// every session that plans dsproc jobs (driver, scheduler).
#[derive(Debug, Default)]
pub struct DsprocQueryPlanner;

#[async_trait]
impl QueryPlanner for DsprocQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(DsprocExtensionPlanner::default())])
            .create_physical_plan(logical_plan, session)
            .await
    }
}
