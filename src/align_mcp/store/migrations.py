"""Append-only schema migrations: never edit one that has shipped, add the next."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("align_mcp")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('experiment', 'project')),
            created_at TEXT NOT NULL
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL REFERENCES sources(name),
            inputs TEXT NOT NULL,
            outputs TEXT NOT NULL,
            reference_outputs TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX runs_source ON runs(source);
        CREATE TABLE evaluators (
            name TEXT PRIMARY KEY,
            feedback_key TEXT NOT NULL,
            description TEXT,
            score_type TEXT NOT NULL,
            judge TEXT NOT NULL,
            draft TEXT NOT NULL,
            draft_updated_at TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX evaluators_feedback_key ON evaluators(feedback_key);
        CREATE TABLE prompt_versions (
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            version INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            judge TEXT NOT NULL,
            message TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (evaluator, version)
        );
        CREATE TABLE queue_items (
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            run_id TEXT NOT NULL REFERENCES runs(id),
            added_at TEXT NOT NULL,
            labeled INTEGER NOT NULL DEFAULT 0,
            reserved_by TEXT,
            reserved_until REAL,
            PRIMARY KEY (evaluator, run_id)
        );
        CREATE INDEX queue_items_pending ON queue_items(evaluator, labeled, added_at);
        CREATE TABLE labels (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            run_id TEXT NOT NULL REFERENCES runs(id),
            score TEXT NOT NULL,
            comment TEXT,
            labeler TEXT,
            created_at TEXT NOT NULL,
            current INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX labels_run ON labels(evaluator, run_id);
        CREATE UNIQUE INDEX labels_current ON labels(evaluator, run_id) WHERE current = 1;
        CREATE TABLE feedback (
            run_id TEXT NOT NULL REFERENCES runs(id),
            key TEXT NOT NULL,
            score TEXT NOT NULL,
            comment TEXT,
            labeler TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        );
        CREATE INDEX feedback_key ON feedback(key);
        CREATE TABLE judge_cache (
            key TEXT PRIMARY KEY,
            judge_score TEXT NOT NULL,
            reasoning TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            created_at TEXT NOT NULL
        );
        CREATE TABLE alignment_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            prompt_ref TEXT NOT NULL,
            version INTEGER,
            prompt TEXT NOT NULL,
            judge TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_hash TEXT NOT NULL,
            split TEXT NOT NULL DEFAULT 'all',
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            total INTEGER NOT NULL,
            metrics TEXT
        );
        CREATE INDEX alignment_runs_evaluator ON alignment_runs(evaluator, id);
        CREATE TABLE alignment_results (
            alignment_id INTEGER NOT NULL REFERENCES alignment_runs(id),
            run_id TEXT NOT NULL,
            human_score TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            judge_score TEXT,
            reasoning TEXT,
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            latency_ms REAL,
            cached INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (alignment_id, run_id)
        );
        """
    )


@migrations()
def m002_holdout(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE splits (
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            run_id TEXT NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('dev', 'test')),
            stratum TEXT NOT NULL,
            assigned_at TEXT NOT NULL,
            PRIMARY KEY (evaluator, run_id)
        );
        ALTER TABLE evaluators ADD COLUMN test_evaluations INTEGER NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m004_diagnose(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE consistency_checks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            prompt_ref TEXT NOT NULL,
            prompt TEXT NOT NULL,
            judge TEXT NOT NULL,
            model TEXT NOT NULL,
            temperature REAL NOT NULL,
            k INTEGER NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX consistency_checks_evaluator ON consistency_checks(evaluator, id);
        CREATE TABLE judge_samples (
            check_id INTEGER NOT NULL REFERENCES consistency_checks(id),
            run_id TEXT NOT NULL,
            sample INTEGER NOT NULL,
            judge_score TEXT,
            reasoning TEXT,
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            PRIMARY KEY (check_id, run_id, sample)
        );
        CREATE INDEX judge_samples_run ON judge_samples(run_id);
        CREATE TABLE triage_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            alignment_id INTEGER NOT NULL REFERENCES alignment_runs(id),
            run_id TEXT NOT NULL,
            category TEXT CHECK (category IN ('judge_error', 'label_error', 'rubric_gap')),
            reason TEXT,
            error TEXT,
            model TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX triage_results_run ON triage_results(evaluator, run_id, id);
        CREATE TABLE label_reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            run_id TEXT NOT NULL REFERENCES runs(id),
            status TEXT NOT NULL CHECK (status IN ('pending', 'agreed', 'disputed', 'adjudicated')),
            reason TEXT,
            first_label_id INTEGER NOT NULL REFERENCES labels(id),
            second_label_id INTEGER REFERENCES labels(id),
            final_label_id INTEGER REFERENCES labels(id),
            requested_at TEXT NOT NULL,
            resolved_at TEXT
        );
        CREATE UNIQUE INDEX label_reviews_open ON label_reviews(evaluator, run_id)
            WHERE status IN ('pending', 'disputed');
        """
    )


@migrations()
def m003_optimizer(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE failure_analyses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            alignment_id INTEGER NOT NULL REFERENCES alignment_runs(id),
            method TEXT NOT NULL,
            result TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX failure_analyses_run ON failure_analyses(alignment_id, id);
        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            mode TEXT NOT NULL,
            alignment_id INTEGER REFERENCES alignment_runs(id),
            analysis_id INTEGER REFERENCES failure_analyses(id),
            base_prompt TEXT NOT NULL,
            prompt TEXT NOT NULL,
            seen_run_ids TEXT NOT NULL,
            result TEXT NOT NULL,
            created_at TEXT NOT NULL,
            applied_at TEXT
        );
        CREATE INDEX proposals_evaluator ON proposals(evaluator, id);
        """
    )


@migrations()
def m005_alignment_baseline(db: Database) -> None:
    db.execute("ALTER TABLE alignment_runs ADD COLUMN baseline_id INTEGER REFERENCES alignment_runs(id)")


@migrations()
def m006_tallies(db: Database) -> None:
    """Counters kept by triggers, so queue summaries stay O(1) at 100k labels (no count(*) per call)."""
    db.executescript(
        """
        CREATE TABLE label_tallies (
            evaluator TEXT NOT NULL,
            score TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (evaluator, score)
        );
        CREATE TABLE queue_tallies (
            evaluator TEXT PRIMARY KEY,
            pending INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO label_tallies (evaluator, score, n)
            SELECT evaluator, score, count(*) FROM labels WHERE current = 1 GROUP BY evaluator, score;
        INSERT INTO queue_tallies (evaluator, pending)
            SELECT evaluator, sum(labeled = 0) FROM queue_items GROUP BY evaluator;

        CREATE TRIGGER labels_tally_insert AFTER INSERT ON labels WHEN NEW.current = 1 BEGIN
            INSERT INTO label_tallies (evaluator, score, n) VALUES (NEW.evaluator, NEW.score, 1)
                ON CONFLICT (evaluator, score) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER labels_tally_update AFTER UPDATE OF current, score ON labels BEGIN
            UPDATE label_tallies SET n = n - 1
                WHERE OLD.current = 1 AND evaluator = OLD.evaluator AND score = OLD.score;
            INSERT INTO label_tallies (evaluator, score, n) SELECT NEW.evaluator, NEW.score, 1 WHERE NEW.current = 1
                ON CONFLICT (evaluator, score) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER labels_tally_delete AFTER DELETE ON labels WHEN OLD.current = 1 BEGIN
            UPDATE label_tallies SET n = n - 1 WHERE evaluator = OLD.evaluator AND score = OLD.score;
        END;

        CREATE TRIGGER queue_tally_insert AFTER INSERT ON queue_items BEGIN
            INSERT INTO queue_tallies (evaluator, pending) VALUES (NEW.evaluator, NEW.labeled = 0)
                ON CONFLICT (evaluator) DO UPDATE SET pending = pending + (NEW.labeled = 0);
        END;
        CREATE TRIGGER queue_tally_update AFTER UPDATE OF labeled ON queue_items WHEN OLD.labeled != NEW.labeled
        BEGIN
            UPDATE queue_tallies SET pending = pending + (NEW.labeled = 0) - (OLD.labeled = 0)
                WHERE evaluator = NEW.evaluator;
        END;
        CREATE TRIGGER queue_tally_delete AFTER DELETE ON queue_items WHEN OLD.labeled = 0 BEGIN
            UPDATE queue_tallies SET pending = pending - 1 WHERE evaluator = OLD.evaluator;
        END;

        CREATE INDEX queue_items_reserved ON queue_items(evaluator, reserved_until)
            WHERE labeled = 0 AND reserved_until IS NOT NULL;
        CREATE INDEX alignment_results_misaligned ON alignment_results(alignment_id, run_id)
            WHERE done = 1 AND error IS NULL AND judge_score != human_score;
        """
    )


@migrations()
def m007_alignment_leases(db: Database) -> None:
    """A lease per alignment run being judged: one process at a time, until it stops renewing (heartbeat)."""
    db.executescript(
        """
        CREATE TABLE alignment_leases (
            alignment_id INTEGER PRIMARY KEY REFERENCES alignment_runs(id),
            token TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            renewed_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        """
    )


@migrations()
def m008_shown_runs(db: Database) -> None:
    """Runs a view showed with their labels and verdicts before they had a holdout split: the split keeps them in
    dev, so the test split stays unseen."""
    db.executescript(
        """
        CREATE TABLE shown_runs (
            evaluator TEXT NOT NULL REFERENCES evaluators(name),
            run_id TEXT NOT NULL,
            shown_at TEXT NOT NULL,
            PRIMARY KEY (evaluator, run_id)
        );
        """
    )


@migrations()
def m009_result_requests(db: Database) -> None:
    """Per example (and per consistency sample): the HTTP requests made for it (retries and re-asks included)
    and the re-asks, and for examples the seconds waited between attempts, so a run reports what it cost and
    not only how many examples it judged."""
    db.executescript(
        """
        ALTER TABLE alignment_results ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE alignment_results ADD COLUMN reasks INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE alignment_results ADD COLUMN waited_s REAL NOT NULL DEFAULT 0;
        ALTER TABLE judge_samples ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE judge_samples ADD COLUMN reasks INTEGER NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m010_pairwise(db: Database) -> None:
    """Pairwise runs and verdicts: a run's second output (its `outputs` are output A), and per result the verdict
    of each order a position-swapped comparison was judged in (JSON: original, swapped and their reasoning)."""
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN outputs_b TEXT;
        ALTER TABLE alignment_results ADD COLUMN orders TEXT;
        """
    )


@migrations()
def m011_few_shot(db: Database) -> None:
    """Few-shot examples: the draft's selection settings, and in each saved version the examples it froze (run ids
    and the rendered block), as JSON; NULL where none are set or the prompt shows none."""
    db.executescript(
        """
        ALTER TABLE evaluators ADD COLUMN few_shot TEXT;
        ALTER TABLE prompt_versions ADD COLUMN few_shot TEXT;
        """
    )


@migrations()
def m012_jury_verdicts(db: Database) -> None:
    """Per example of a jury's alignment run, each member's verdict (or error), so a report can show every
    member's agreement beside the jury's and how often the members split."""
    db.executescript(
        """
        CREATE TABLE jury_verdicts (
            alignment_id INTEGER NOT NULL REFERENCES alignment_runs(id),
            run_id TEXT NOT NULL,
            member INTEGER NOT NULL,
            model TEXT NOT NULL,
            judge_score TEXT,
            reasoning TEXT,
            error TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (alignment_id, run_id, member)
        );
        """
    )


@migrations()
def m013_batch_jobs(db: Database) -> None:
    """Judge requests sent through a provider's Batch API: the job (what it judges for), its parts (one provider
    batch each, with its ids and request counts, so a restarted process polls instead of sending again), the
    requests of each part, and the requests that came back as errors."""
    db.executescript(
        """
        CREATE TABLE batch_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('alignment', 'pass_rate')),
            evaluator TEXT NOT NULL,
            alignment_id INTEGER REFERENCES alignment_runs(id),
            base_url TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX batch_jobs_alignment ON batch_jobs(alignment_id);
        CREATE TABLE batch_parts (
            job_id INTEGER NOT NULL REFERENCES batch_jobs(id),
            part INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            input_file_id TEXT,
            batch_id TEXT,
            status TEXT NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            output_file_id TEXT,
            error_file_id TEXT,
            error TEXT,
            merged INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (job_id, part)
        );
        CREATE TABLE batch_requests (
            job_id INTEGER NOT NULL REFERENCES batch_jobs(id),
            custom_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            PRIMARY KEY (job_id, custom_id)
        ) WITHOUT ROWID;
        CREATE TABLE batch_errors (
            job_id INTEGER NOT NULL REFERENCES batch_jobs(id),
            custom_id TEXT NOT NULL,
            error TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            PRIMARY KEY (job_id, custom_id)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m014_label_rubric(db: Database) -> None:
    """Every label remembers the rubric it was given under (the latest saved version then; 0 before any save),
    and imported feedback keeps the details an export carries (history, split, dates, rubric) until an evaluator
    with its key takes them. Existing labels get the version saved last before they were made. Current labels
    per rubric are counted by triggers (as m006 counts them per score), so list_queues stays O(1) in labels."""
    db.executescript(
        """
        ALTER TABLE labels ADD COLUMN rubric_version INTEGER NOT NULL DEFAULT 0;
        UPDATE labels SET rubric_version = (
            SELECT coalesce(max(p.version), 0) FROM prompt_versions p
            WHERE p.evaluator = labels.evaluator AND p.created_at <= labels.created_at
        );
        CREATE INDEX labels_rubric ON labels(evaluator, rubric_version) WHERE current = 1;
        ALTER TABLE feedback ADD COLUMN details TEXT;

        CREATE TABLE rubric_tallies (
            evaluator TEXT NOT NULL,
            rubric_version INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (evaluator, rubric_version)
        );
        INSERT INTO rubric_tallies (evaluator, rubric_version, n)
            SELECT evaluator, rubric_version, count(*) FROM labels WHERE current = 1
            GROUP BY evaluator, rubric_version;
        CREATE TRIGGER labels_rubric_insert AFTER INSERT ON labels WHEN NEW.current = 1 BEGIN
            INSERT INTO rubric_tallies (evaluator, rubric_version, n) VALUES (NEW.evaluator, NEW.rubric_version, 1)
                ON CONFLICT (evaluator, rubric_version) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER labels_rubric_update AFTER UPDATE OF current, rubric_version ON labels BEGIN
            UPDATE rubric_tallies SET n = n - 1
                WHERE OLD.current = 1 AND evaluator = OLD.evaluator AND rubric_version = OLD.rubric_version;
            INSERT INTO rubric_tallies (evaluator, rubric_version, n)
                SELECT NEW.evaluator, NEW.rubric_version, 1 WHERE NEW.current = 1
                ON CONFLICT (evaluator, rubric_version) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER labels_rubric_delete AFTER DELETE ON labels WHEN OLD.current = 1 BEGIN
            UPDATE rubric_tallies SET n = n - 1
                WHERE evaluator = OLD.evaluator AND rubric_version = OLD.rubric_version;
        END;
        """
    )


@migrations()
def m015_comparison_runs(db: Database) -> None:
    """Alignment runs made to compare judge models: kept and reused like any run, but never taken as an
    evaluator's latest run (the misaligned cases and the draft's baseline come from its own judge)."""
    db.executescript(
        """
        ALTER TABLE alignment_runs ADD COLUMN comparison INTEGER NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m016_consistency_batches(db: Database) -> None:
    """Self-consistency checks through the Batch API: a batch job of kind 'consistency' belongs to its check, and
    its verdicts are kept with the job (batch_results), never in the judge cache: repeated samples must each be
    judged afresh, and a pairwise sample is stored once both of its orders are back.

    The kind's CHECK gains 'consistency' by rewriting the table's stored SQL (SQLite's documented way to loosen a
    CHECK without rebuilding the table: every stored row still satisfies it). Rebuilding instead would drop a
    table other tables reference, which fails inside the migration's transaction while foreign keys are on."""
    old = "CHECK (kind IN ('alignment', 'pass_rate'))"
    new = "CHECK (kind IN ('alignment', 'pass_rate', 'consistency'))"
    version = db.execute("PRAGMA SCHEMA_VERSION").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    try:
        changed = db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'batch_jobs'",
            [old, new],
        ).rowcount
        db.execute(f"PRAGMA SCHEMA_VERSION = {int(version) + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")
    if changed != 1:
        raise RuntimeError("m016: the batch_jobs table does not have the CHECK on kind that m013 made.")
    db.executescript(
        """
        ALTER TABLE batch_jobs ADD COLUMN check_id INTEGER REFERENCES consistency_checks(id);
        CREATE TABLE batch_results (
            job_id INTEGER NOT NULL REFERENCES batch_jobs(id),
            custom_id TEXT NOT NULL,
            judge_score TEXT NOT NULL,
            reasoning TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cached_tokens INTEGER,
            PRIMARY KEY (job_id, custom_id)
        ) WITHOUT ROWID;
        """
    )
