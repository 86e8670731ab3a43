//! The Admin API calls rdkafka 0.39 does not make, through rdkafka-sys on the admin client's
//! own librdkafka handle: serving its main event queue, and IncrementalAlterConfigs. The only
//! `unsafe` code of velib-topics is here; the rest of the crate denies it.

#![allow(unsafe_code)]

/// librdkafka's main event queue of the admin client, served by hand.
pub(super) mod main_queue {
    use rdkafka::admin::AdminClient;
    use rdkafka::client::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;
    use rdkafka::error::KafkaError;
    use rdkafka_sys as rdsys;
    use std::ffi::{CStr, c_int};
    use std::ptr;
    use velib_kafka::ReportingContext;

    /// Serves the client's main event queue: librdkafka's log lines and client errors wait
    /// there until someone polls it, and an admin client's own calls never do. Without this,
    /// a refused certificate or password would surface only as a timeout.
    pub(crate) fn serve(admin: &AdminClient<ReportingContext>) {
        let client = admin.inner();
        // SAFETY: the client outlives this call; the queue handle and every event polled from
        // it are destroyed here; the strings an event hands out live as long as the event.
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(client.native_ptr());
            loop {
                let event = rdsys::rd_kafka_queue_poll(queue, 0);
                if event.is_null() {
                    break;
                }
                match rdsys::rd_kafka_event_type(event) {
                    rdsys::RD_KAFKA_EVENT_LOG => {
                        let (mut fac, mut text, mut level) = (ptr::null(), ptr::null(), 0);
                        if rdsys::rd_kafka_event_log(event, &mut fac, &mut text, &mut level) == 0 {
                            let fac = CStr::from_ptr(fac).to_string_lossy();
                            let text = CStr::from_ptr(text).to_string_lossy();
                            client.context().guard().observe_log(&fac, &text);
                            velib_kafka::connection::forward_librdkafka_log(
                                log_level(level),
                                &fac,
                                &text,
                            );
                        }
                    }
                    rdsys::RD_KAFKA_EVENT_ERROR => {
                        let code = rdsys::rd_kafka_event_error(event);
                        let reason = CStr::from_ptr(rdsys::rd_kafka_event_error_string(event))
                            .to_string_lossy()
                            .into_owned();
                        client
                            .context()
                            .error(KafkaError::Global(code.into()), &reason);
                    }
                    _ => {}
                }
                rdsys::rd_kafka_event_destroy(event);
            }
            rdsys::rd_kafka_queue_destroy(queue);
        }
    }

    fn log_level(level: c_int) -> RDKafkaLogLevel {
        match level {
            0 => RDKafkaLogLevel::Emerg,
            1 => RDKafkaLogLevel::Alert,
            2 => RDKafkaLogLevel::Critical,
            3 => RDKafkaLogLevel::Error,
            4 => RDKafkaLogLevel::Warning,
            5 => RDKafkaLogLevel::Notice,
            6 => RDKafkaLogLevel::Info,
            _ => RDKafkaLogLevel::Debug,
        }
    }
}

/// IncrementalAlterConfigs through rdkafka-sys, since rdkafka 0.39 does not wrap it.
///
/// It runs on the admin client's own librdkafka handle, with a queue of its own for the answer,
/// so it does not disturb the requests rdkafka's wrapper sends on the same handle.
pub(super) mod incremental {
    use crate::failure_with;
    use rdkafka::admin::AdminClient;
    use rdkafka::error::RDKafkaErrorCode;
    use rdkafka_sys as rdsys;
    use rdkafka_sys::types::{RDKafkaAdminOp, RDKafkaEvent, RDKafkaResourceType};
    use std::collections::BTreeMap;
    use std::ffi::{CStr, CString, c_char, c_int};
    use std::time::Duration;
    use velib_kafka::ReportingContext;

    const OPERATION: &str = "IncrementalAlterConfigs";

    /// SETs every one of `configs` on `topic`, leaving its other configs as they are; blocks
    /// until the broker answers or `timeout` passes.
    pub(crate) fn set_topic_configs(
        admin: &AdminClient<ReportingContext>,
        topic: &str,
        configs: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let nul = |what: &str| format!("{OPERATION}: {what} contains a NUL byte");
        let name = CString::new(topic).map_err(|_| nul("the topic name"))?;
        let mut entries = Vec::with_capacity(configs.len());
        for (key, value) in configs {
            entries.push((
                CString::new(key.as_str()).map_err(|_| nul(key))?,
                CString::new(value.as_str()).map_err(|_| nul(key))?,
            ));
        }
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        let rk = admin.inner().native_ptr();

        // SAFETY: `rk` is the live handle of `admin`, which outlives this call. The resource is
        // created and destroyed here, after its last use (librdkafka copies it into the
        // request); librdkafka copies the strings it is given.
        unsafe {
            let resource = rdsys::rd_kafka_ConfigResource_new(
                RDKafkaResourceType::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            );
            if resource.is_null() {
                return Err(format!(
                    "{OPERATION}: librdkafka refused the topic name {topic:?}"
                ));
            }
            let mut result = Ok(());
            for (key, value) in &entries {
                let error = rdsys::rd_kafka_ConfigResource_add_incremental_config(
                    resource,
                    key.as_ptr(),
                    rdsys::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    value.as_ptr(),
                );
                if !error.is_null() {
                    result = Err(format!(
                        "{OPERATION}: {}",
                        text(rdsys::rd_kafka_error_string(error))
                    ));
                    rdsys::rd_kafka_error_destroy(error);
                    break;
                }
            }
            if result.is_ok() {
                result = send(rk, resource, timeout_ms);
            }
            rdsys::rd_kafka_ConfigResource_destroy(resource);
            result
        }
    }

    /// Sends the request for `resource` and waits for its answer.
    ///
    /// # Safety
    ///
    /// `rk` must be a live client handle and `resource` a live config resource, both still
    /// owned by the caller.
    unsafe fn send(
        rk: *mut rdsys::rd_kafka_t,
        resource: *mut rdsys::rd_kafka_ConfigResource_t,
        timeout_ms: c_int,
    ) -> Result<(), String> {
        // SAFETY: as the caller promises; the options, queue and event are created here and
        // destroyed once each, after their last use, the event before its queue.
        unsafe {
            let options = rdsys::rd_kafka_AdminOptions_new(
                rk,
                RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            );
            let mut errstr = [0 as c_char; 512];
            // Only fails for a timeout out of range, which `c_int` already prevents.
            let _ = rdsys::rd_kafka_AdminOptions_set_request_timeout(
                options,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            let queue = rdsys::rd_kafka_queue_new(rk);
            let mut resources = [resource];
            rdsys::rd_kafka_IncrementalAlterConfigs(
                rk,
                resources.as_mut_ptr(),
                resources.len(),
                options,
                queue,
            );
            // The request times out by itself and then still posts an answer; the extra
            // second only guards against none ever coming.
            let event = rdsys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
            let result = if event.is_null() {
                Err(failure_with(
                    OPERATION,
                    RDKafkaErrorCode::OperationTimedOut,
                    None,
                ))
            } else {
                let result = read(event);
                rdsys::rd_kafka_event_destroy(event);
                result
            };
            rdsys::rd_kafka_queue_destroy(queue);
            rdsys::rd_kafka_AdminOptions_destroy(options);
            result
        }
    }

    /// The request's and the topic's errors in `event`.
    ///
    /// # Safety
    ///
    /// `event` must be a live IncrementalAlterConfigs result event.
    unsafe fn read(event: *mut RDKafkaEvent) -> Result<(), String> {
        // SAFETY: as the caller promises; everything read here is owned by the event.
        unsafe {
            let code: RDKafkaErrorCode = rdsys::rd_kafka_event_error(event).into();
            if code != RDKafkaErrorCode::NoError {
                let detail = text(rdsys::rd_kafka_event_error_string(event));
                return Err(failure_with(OPERATION, code, Some(&detail)));
            }
            let result = rdsys::rd_kafka_event_IncrementalAlterConfigs_result(event);
            if result.is_null() {
                return Err(format!(
                    "{OPERATION}: librdkafka answered with another event"
                ));
            }
            let mut count = 0;
            let resources =
                rdsys::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
            for i in 0..count {
                let resource = *resources.add(i);
                let code: RDKafkaErrorCode = rdsys::rd_kafka_ConfigResource_error(resource).into();
                if code != RDKafkaErrorCode::NoError {
                    let detail = text(rdsys::rd_kafka_ConfigResource_error_string(resource));
                    return Err(failure_with(OPERATION, code, Some(&detail)));
                }
            }
            Ok(())
        }
    }

    /// A C string from librdkafka, or "" for none.
    ///
    /// # Safety
    ///
    /// `s` must be null or a NUL-terminated string that lives through the call.
    unsafe fn text(s: *const c_char) -> String {
        if s.is_null() {
            String::new()
        } else {
            // SAFETY: as the caller promises.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        }
    }
}
