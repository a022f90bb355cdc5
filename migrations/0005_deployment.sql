-- The ClickHouse deployment a job was applied to: "cluster:NAME[host:port,...]"
-- or "node:..." for a single node (see planner.Connector.Deployments). Jobs
-- are unique per deployment, so that one job store can serve several
-- ClickHouse deployments, and each sees only its own jobs. '' marks a job
-- recorded before deployments were: every deployment sees it until an apply
-- records its deployment.
ALTER TABLE mv_jobs ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
ALTER TABLE mv_jobs DROP CONSTRAINT mv_jobs_database_name_key;
ALTER TABLE mv_jobs ADD CONSTRAINT mv_jobs_deployment_database_name_key UNIQUE (deployment, database, name);
