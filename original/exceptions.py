from rest_framework import status

from aitbc_site.exceptions import ApplicationError


class JobNotFinished(ApplicationError):
    # 425 Too Early is what the original coordinator answers while a job's result does not exist yet.
    status_code = status.HTTP_425_TOO_EARLY
    code = "JOB_NOT_FINISHED"
    default_message = "The job has not finished yet; ask again later (GET /v1/jobs/{id} shows its state)."
