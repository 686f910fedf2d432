"""The one settings object. Every value comes from the environment (or a `.env` file)."""

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    study_id: str = Field("NCT05173246", validation_alias="STUDY_ID")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    # How every Kafka client of the services connects (shared/kafka.py kafka_client_kwargs):
    # TLS (SSL, SASL_SSL) and SASL login (SASL_PLAINTEXT, SASL_SSL). The CA file is needed only
    # when the broker's certificate is not signed by a CA of the system's store; the client
    # certificate and key only for mutual TLS.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: FilePath | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE")
    # Prefix for every topic name and consumer group, so parallel runs (tests, demos) never mix.
    topic_namespace: str = Field("", validation_alias="TOPIC_NAMESPACE")
    topic_partitions: int = Field(6, ge=1, validation_alias="TOPIC_PARTITIONS")
    topic_replication_factor: int = Field(1, ge=1, validation_alias="TOPIC_REPLICATION_FACTOR")
    # A consumer that does not poll again within this is evicted from its group (its partitions
    # go to another member): a batch's handling, the grader's state rebuild included, must end
    # within it. Longer: a slower rebuild fits; a hung consumer keeps its partitions longer.
    consumer_max_poll_interval_s: int = Field(
        300, ge=10, validation_alias="CONSUMER_MAX_POLL_INTERVAL_S"
    )

    database_url: str = Field(
        "sqlite+aiosqlite:///.local/safetymon.db", validation_alias="DATABASE_URL"
    )

    smtp_host: str = Field("127.0.0.1", validation_alias="SMTP_HOST")
    smtp_port: int = Field(8025, validation_alias="SMTP_PORT")
    smtp_username: str | None = Field(None, validation_alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, validation_alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(False, validation_alias="SMTP_STARTTLS")
    smtp_timeout_s: float = Field(10.0, validation_alias="SMTP_TIMEOUT_S")
    alert_email_from: str = Field("safetymon@localhost", validation_alias="ALERT_EMAIL_FROM")
    alert_email_recipients: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["safety-desk@localhost"],
        validation_alias="ALERT_EMAIL_RECIPIENTS",
    )

    # The study's protocol file (regimen and dose rules); default protocols/<STUDY_ID>.yaml.
    protocol_file: str | None = Field(None, validation_alias="PROTOCOL_FILE")

    # Site reference ranges for results sent without LLN/ULN (CSV; default: the shipped table).
    reference_ranges_file: str | None = Field(None, validation_alias="REFERENCE_RANGES_FILE")

    # Users of the safety desk (YAML: roles, argon2 password hashes, token hashes) and the key
    # that signs their web sessions: both required by the alert service.
    users_file: str | None = Field(None, validation_alias="USERS_FILE")
    session_secret: SecretStr = Field(SecretStr(""), validation_alias="SESSION_SECRET")
    session_cookie_secure: bool = Field(True, validation_alias="SESSION_COOKIE_SECURE")

    # Routes of alerts to recipients and channels (YAML); default: the addresses below.
    routing_file: str | None = Field(None, validation_alias="ROUTING_FILE")
    webhook_timeout_s: float = Field(5.0, gt=0, validation_alias="WEBHOOK_TIMEOUT_S")

    # Escalation: an open alert not acknowledged within its severity's limit (minutes) goes up a
    # tier, to ESCALATION_RECIPIENTS, once per limit elapsed ("critical=15,high=120").
    escalation_minutes: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: {"critical": 15.0, "high": 120.0, "medium": 480.0},
        validation_alias="ESCALATION_MINUTES",
    )
    escalation_recipients: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["medical-monitor@localhost"],
        validation_alias="ESCALATION_RECIPIENTS",
    )
    escalation_check_s: float = Field(30.0, gt=0, validation_alias="ESCALATION_CHECK_S")

    # How often failed or pending alert emails are tried again.
    notification_retry_s: float = Field(15.0, gt=0, validation_alias="NOTIFICATION_RETRY_S")

    # Interoperability (HL7 v2, FHIR, SDTM): each site's HL7 sending facilities and local test
    # codes (YAML; default interop/<STUDY_ID>.yaml), and the enrolment map from hospital patient
    # identifiers and SDTM USUBJIDs to study subjects (CSV; default
    # interop/<STUDY_ID>.enrolment.csv). It holds identifiers of patients: keep it out of images.
    interop_file: str | None = Field(None, validation_alias="INTEROP_FILE")
    enrolment_map_file: str | None = Field(None, validation_alias="ENROLMENT_MAP_FILE")
    mllp_port: int = Field(2575, validation_alias="MLLP_PORT")  # HL7 v2 over MLLP (ingest)

    # The systems that may submit to ingest over HTTP, each with its token's sha256 and the
    # sites it sends for (YAML, format: deploy/senders.example.yaml): required by ingest.
    ingest_senders_file: str | None = Field(None, validation_alias="INGEST_SENDERS_FILE")
    # How long ingest waits for Kafka's acknowledgement before answering 503 (retry): short, so
    # a slow or unreachable broker pushes back on senders instead of holding their requests.
    ingest_publish_timeout_s: float = Field(
        5.0, gt=0, le=120, validation_alias="INGEST_PUBLISH_TIMEOUT_S"
    )

    bind_host: str = Field("127.0.0.1", validation_alias="BIND_HOST")
    ingest_port: int = Field(8001, validation_alias="INGEST_PORT")
    grader_port: int = Field(8002, validation_alias="GRADER_PORT")
    alerts_port: int = Field(8003, validation_alias="ALERTS_PORT")
    dsmb_port: int = Field(8004, validation_alias="DSMB_PORT")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field("json", validation_alias="LOG_FORMAT")

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> "Settings":
        if self.smtp_username and not self.smtp_starttls:
            raise ValueError(
                "SMTP_USERNAME is set without SMTP_STARTTLS: refusing to send a "
                "password in clear text"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> "Settings":
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (the login the broker knows the services by)"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}: they would be ignored; use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN":
            raise ValueError(
                "KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in clear "
                "text: use SASL_SSL, or a SCRAM mechanism"
            )
        files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not protocol.endswith("SSL") and any(files):
            raise ValueError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL is {protocol}: they "
                "would be ignored; use SSL or SASL_SSL"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (mutual TLS)")
        return self

    @field_validator("escalation_minutes", mode="before")
    @classmethod
    def _parse_limits(cls, value: object) -> object:
        # "critical=15,high=120": severity=minutes pairs, as an operator writes them.
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            return {key.strip(): float(minutes) for key, minutes in pairs}
        return value

    @field_validator("alert_email_recipients", "escalation_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        # Operators write "a@x, b@y" in an environment variable, not JSON.
        if isinstance(value, str):
            return [address.strip() for address in value.split(",") if address.strip()]
        return value

    def topic(self, base_name: str) -> str:
        return f"{self.topic_namespace}{base_name}"

    def consumer_group(self, service: str) -> str:
        return f"{self.topic_namespace}safetymon-{service}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
