DROP TABLE jobs;
DROP TABLE audit_baselines;
DROP TABLE violations;
DROP TABLE audits;
DROP TABLE baselines;
DROP TABLE captures;
DROP TABLE runs;
DROP TABLE checks;
