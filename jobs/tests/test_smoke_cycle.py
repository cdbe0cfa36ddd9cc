from conftest import poll, post_result, register_miner, submit_job


def test_a_job_goes_from_submission_to_completed(client_api, miner_api):
    job = submit_job(client_api)
    miner = register_miner(miner_api)
    assignment = poll(miner_api, miner["id"])["results"][0]
    assert assignment["id"] == job["id"]
    response = post_result(miner_api, miner["id"], job["id"])
    assert response.status_code == 200, response.content
    read = client_api.get(f"/v1/client/jobs/{job['id']}").json()
    assert read["status"] == "completed"
    assert read["result"] == {"text": "hi"}
